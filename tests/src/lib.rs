//! Harness for the end-to-end tests in `tests/tests/`: starts the real `mwi-store` binary on
//! loopback ports with a temporary store, reads the addresses it bound from its start-up log
//! line, and kills it when the handle drops; plus the client steps the tests share: a chat or
//! page-mode deposit, and answering PUBLISHes as the presence server until the awaited one.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use msrp_session::MsrpEndpoint;
use mwi_store::client::chat::{call, CallOptions};
use mwi_store::client::presence::{PresenceServer, Publish};
use mwi_store::client::sip_uac::SipUac;

/// Path of the `mwi-store` binary, built once per test process with the same profile as the
/// test itself (the test executable lives in `target/<profile>/deps/`).
pub fn binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected test executable path {}", exe.display()))?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "mwi-store", "--bin", "mwi-store"]);
    if release {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    // `cargo test` gives this process the test crate's CARGO_MANIFEST_DIR / CARGO_PKG_*; ring's
    // build script reruns when they differ from the last build (`rerun-if-env-changed`), which
    // would rebuild the TLS stack on every switch between `cargo build` and the e2e tests.
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str() {
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name == "CARGO_CRATE_NAME"
                || name == "CARGO_PRIMARY_PACKAGE"
            {
                cmd.env_remove(name);
            }
        }
    }
    let status = cmd.status().context("run cargo build for mwi-store")?;
    if !status.success() {
        bail!("cargo build -p mwi-store failed: {status}");
    }
    let bin = profile_dir.join("mwi-store");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// SIP over UDP.
    pub sip_udp: SocketAddr,
    /// SIP over TCP.
    pub sip_tcp: SocketAddr,
    /// SIP over TLS, when a `tls:` listener is configured.
    pub sip_tls: Option<SocketAddr>,
    /// MSRP listener.
    pub msrp: SocketAddr,
    /// MSRP over TLS listener (`msrp.tls_listen`), when configured.
    pub msrps: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub config: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server with SIP (UDP+TCP) and MSRP on free loopback ports, a fresh store and
    /// JSON logs. `extra_toml` is appended to the generated config (sections not already set
    /// there: `[fetch]`, `[mwi]`, `[deposit]`, `[store]` keys other than `path`…).
    pub fn start(extra_toml: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("mwi-store.db");
        Self::start_in(dir, db, extra_toml)
    }

    /// Starts on an existing directory and database (restart tests).
    pub fn start_in(dir: tempfile::TempDir, db: PathBuf, extra_toml: &str) -> anyhow::Result<Self> {
        let config = dir.path().join("mwi-store.toml");
        let base = format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n[msrp]\nlisten = \"127.0.0.1:0\"\n\
             [store]\npath = {:?}\n",
            db.display().to_string()
        );
        let text = merge_toml(&base, extra_toml)?;
        std::fs::write(&config, text)?;
        let mut child = Command::new(binary()?)
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("MWI_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn mwi-store")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if std::env::var_os("MWI_TEST_ECHO").is_some() {
                    eprintln!("[mwi-store] {line}");
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let mut server = Self {
            child,
            sip_udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            sip_tcp: SocketAddr::from(([127, 0, 0, 1], 0)),
            sip_tls: None,
            msrp: SocketAddr::from(([127, 0, 0, 1], 0)),
            msrps: None,
            dir,
            db,
            config,
            logs,
        };
        let started = server
            .wait_log(
                |l| l["message"] == "mwi-store started",
                Duration::from_secs(60),
            )
            .context("server did not log its start-up line")?;
        for addr in started["sip"].as_str().unwrap_or("").split_whitespace() {
            let (transport, a) = addr.split_once(':').unwrap_or(("", ""));
            let a: SocketAddr = a.parse().with_context(|| format!("bad sip addr {addr}"))?;
            match transport {
                "udp" => server.sip_udp = a,
                "tcp" => server.sip_tcp = a,
                "tls" => server.sip_tls = Some(a),
                _ => {}
            }
        }
        server.msrp = started["msrp"]
            .as_str()
            .unwrap_or("")
            .parse()
            .context("bad msrp addr in start-up line")?;
        server.msrps = match started["msrps"].as_str().unwrap_or("") {
            "" => None,
            a => Some(a.parse().context("bad msrps addr in start-up line")?),
        };
        Ok(server)
    }

    /// Every log line so far, parsed as JSON (lines that are not JSON are skipped).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .map(|l| {
                l.iter()
                    .filter_map(|s| serde_json::from_str(s).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for a log line matching `pred`.
    pub fn wait_log(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        wait: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(v) = self.log_lines().into_iter().find(|v| pred(v)) {
                return Ok(v);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("mwi-store exited with {status}; logs:\n{}", self.raw_logs());
            }
            if Instant::now() > deadline {
                bail!(
                    "no matching log line within {wait:?}; logs:\n{}",
                    self.raw_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line logged up to and including the first one matching `pred`, once that one is
    /// out. The server writes its log in batches (up to 10 ms late) but in order, so a line
    /// known to be logged after some events is the barrier for counting the lines of those
    /// events; a snapshot of [`Self::log_lines`] may miss the last batch.
    pub fn log_lines_through(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        wait: Duration,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        self.wait_log(&pred, wait)?;
        let mut lines = self.log_lines();
        if let Some(i) = lines.iter().position(pred) {
            lines.truncate(i + 1);
        }
        Ok(lines)
    }

    pub fn raw_logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("mwi-store did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would; keeps the directory for a restart.
    pub fn kill(mut self) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
        self.child.kill()?;
        self.child.wait()?;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        Ok((dir, self.db.clone()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `extra` over `base`, table by table (TOML forbids a table twice).
fn merge_toml(base: &str, extra: &str) -> anyhow::Result<String> {
    let mut base: toml::Table = base.parse()?;
    let extra: toml::Table = extra.parse().context("extra config is not TOML")?;
    for (section, value) in extra {
        match (base.get_mut(&section), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => b.extend(e),
            (_, v) => {
                base.insert(section, v);
            }
        }
    }
    Ok(toml::to_string(&base)?)
}

/// Prints the SKIPPED line the project promises when an external tool is missing.
pub fn skip_without(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("SKIPPED: {tool} not found; install it with: apt-get install -y {package}");
    }
    !found
}

/// Test-side access to the running server's store (read-only use; claims are not touched).
pub fn open_store(db: &Path) -> anyhow::Result<message_store::Store> {
    let mut config = message_store::StoreConfig::new(db);
    config.release_claims_on_open = false;
    config.read_connections = 1;
    Ok(message_store::Store::open(config)?)
}

/// Checks `done` every 20 ms until it holds; after `wait`, fails with `what`. For a state the
/// server reaches behind an answer (a row saved, a line logged), instead of a guessed sleep.
pub async fn wait_until(
    wait: Duration,
    what: &str,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("{what} within {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A client endpoint: a SIP UA on UDP and an MSRP endpoint, both on `ip`.
pub async fn client(
    ip: &str,
    server: &Server,
    chunk_size: usize,
) -> anyhow::Result<(SipUac, MsrpEndpoint)> {
    let uac = SipUac::bind(format!("{ip}:0").parse()?, server.sip_udp).await?;
    let msrp = MsrpEndpoint::bind(
        format!("{ip}:0").parse()?,
        msrp_session::EndpointConfig {
            chunk_size,
            transaction_timeout: Duration::from_secs(5),
            ..msrp_session::EndpointConfig::default()
        },
    )
    .await?;
    Ok((uac, msrp))
}

/// A stand-in presence server on a free loopback port, and a server that publishes MWI to it
/// (`[mwi] proxy`); `extra_toml` as for [`Server::start`].
pub async fn start_with_presence(extra_toml: &str) -> anyhow::Result<(Server, PresenceServer)> {
    let presence = PresenceServer::bind("127.0.0.1:0".parse()?).await?;
    let mwi = format!("[mwi]\nproxy = \"udp:{}\"\n", presence.local_addr());
    let server = Server::start(&merge_toml(&mwi, extra_toml)?)?;
    Ok((server, presence))
}

/// Plain-text bodies `"{prefix} {i}"` for `i` in `0..n`, as [`deposit`] takes them.
pub fn texts(n: usize, prefix: &str) -> Vec<(&'static str, Bytes)> {
    (0..n)
        .map(|i| ("text/plain", Bytes::from(format!("{prefix} {i}"))))
        .collect()
}

/// One chat deposit: INVITE with `opts`, the greeting, one SEND per body (each waits for its
/// MSRP 200, which the server sends after the commit), BYE.
pub async fn deposit(
    uac: &SipUac,
    msrp: &MsrpEndpoint,
    opts: &CallOptions,
    bodies: &[(&str, Bytes)],
    wait: Duration,
) -> anyhow::Result<()> {
    let mut chat = call(uac, msrp, opts, wait).await?;
    chat.next_message(wait).await.context("the greeting")?;
    for (content_type, body) in bodies {
        chat.send(content_type, body.clone()).await?;
    }
    chat.bye(uac, wait).await?;
    Ok(())
}

/// One page-mode deposit (RFC 3428 MESSAGE); fails unless it is answered 202 (stored).
pub async fn deposit_message(
    uac: &SipUac,
    from: &str,
    to: &str,
    body: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let message = uac.message_request(from, to, "", body);
    let resp = uac.transact(&message, wait).await?;
    if resp.status() != 202 {
        bail!("MESSAGE answered `{}`", resp.start_line);
    }
    Ok(())
}

/// The new-message count of a message-summary body: `new` in `Text-Message: new/old`
/// (RFC 3842 §5.2).
pub fn new_count(body: &str) -> Option<u64> {
    let line = body.lines().find(|l| l.starts_with("Text-Message:"))?;
    line.split_once(':')?
        .1
        .trim()
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Answers every PUBLISH 200 with a fresh SIP-ETag, as the presence server, until `done` holds
/// for the one just accepted (assertions every PUBLISH must pass go in `done` too); fails when
/// none does within `wait`. Returns that PUBLISH and the ETag it got.
pub async fn accept_publishes_until(
    presence: &mut PresenceServer,
    wait: Duration,
    mut done: impl FnMut(&Publish) -> bool,
) -> anyhow::Result<(Publish, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let publish = presence.next_publish(left).await.with_context(|| {
            format!("waiting for the awaited PUBLISH; the last body was {last:?}")
        })?;
        let etag = presence.accept(&publish).await?;
        if done(&publish) {
            return Ok((publish, etag));
        }
        last = Some(publish.body);
    }
}
