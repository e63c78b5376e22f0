//! Configuration: one TOML file, every key optional with the embedded defaults of SPEC §7.
//!
//! Unknown keys are refused (`deny_unknown_fields`) and [`Config::validate`] checks every value
//! at start-up, so an operator's typo fails loudly with the key, the value and why instead of
//! being ignored.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub sip: SipSection,
    pub msrp: MsrpSection,
    pub store: StoreSection,
    pub fetch: FetchSection,
    pub mwi: MwiSection,
    pub deposit: DepositSection,
    pub log: LogSection,
    pub metrics: MetricsSection,
    pub tls: TlsSection,
    pub limits: LimitsSection,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSection {
    /// `transport:host:port`, transport `udp`, `tcp` or `tls` (needs `[tls]`); IPv6 as
    /// `udp:[::1]:5070`.
    pub listen: Vec<String>,
    /// Addresses or CIDRs whose From / P-Asserted-Identity are believed (RFC 3325).
    pub trusted_proxies: Vec<String>,
    /// Host names that mean "this server" in a Request-URI (RFC 4458 retargeting), besides
    /// the listen addresses.
    pub local_hosts: Vec<String>,
    pub user_agent: String,
    /// Listen backlog for TCP listeners (SPEC §5: at least 4096 for bursts).
    pub tcp_backlog: u32,
    /// Receive buffer asked for on each UDP socket (0: the system default); Linux caps it at
    /// `net.core.rmem_max`.
    pub udp_receive_buffer_bytes: usize,
}

impl Default for SipSection {
    fn default() -> Self {
        Self {
            listen: vec!["udp:127.0.0.1:5070".into(), "tcp:127.0.0.1:5070".into()],
            trusted_proxies: vec!["127.0.0.1/32".into()],
            local_hosts: Vec::new(),
            user_agent: format!("mwi-store/{}", env!("CARGO_PKG_VERSION")),
            tcp_backlog: 4096,
            udp_receive_buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MsrpSection {
    /// `host:port` put in `a=path`; port 0 picks one.
    pub listen: String,
    /// Largest message accepted or sent (`a=max-size`).
    pub max_message_bytes: u64,
    /// Outgoing chunk size.
    pub chunk_size: usize,
    /// How long an outgoing SEND waits for its response.
    pub send_timeout_secs: u64,
    /// `host:port` of the MSRP-over-TLS listener (`msrps` paths, answers `TCP/TLS/MSRP`
    /// offers; needs `[tls]`); empty (the default): no MSRP over TLS.
    pub tls_listen: String,
}

impl Default for MsrpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2855".into(),
            max_message_bytes: 1024 * 1024,
            chunk_size: 2048,
            send_timeout_secs: 30,
            tls_listen: String::new(),
        }
    }
}

/// Certificate and key for `tls:` SIP listeners and the MSRP TLS listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM trust anchors for peers we connect to over TLS (MSRP when we are the active side);
    /// empty: no peer is trusted, so such connections fail.
    pub ca: PathBuf,
}

/// SQLite durability: `full` (default) makes every acknowledged message survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousMode {
    Full,
    Normal,
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    pub path: PathBuf,
    pub synchronous: SynchronousMode,
    pub group_commit_max_rows: usize,
    pub group_commit_max_wait_us: u64,
    pub max_message_bytes: u64,
    pub max_messages_per_mailbox: u64,
    pub max_bytes_per_mailbox: u64,
    /// Messages older than this are purged; 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("mwi-store.db"),
            synchronous: SynchronousMode::Full,
            group_commit_max_rows: 512,
            group_commit_max_wait_us: 0,
            max_message_bytes: 1024 * 1024,
            max_messages_per_mailbox: 1000,
            max_bytes_per_mailbox: 16 * 1024 * 1024,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSection {
    /// The one fetch URI; also the `Message-Account` of every summary.
    pub uri: String,
    /// SENDs in flight during a fetch.
    pub window: usize,
    /// Keep delivered messages as "old" for this many days; 0 deletes them on delivery.
    pub keep_delivered_days: u32,
    pub no_messages_text: String,
    /// Prefix for fetchers that do not accept CPIM; `{sender}` and `{time}` are replaced.
    pub plain_prefix: String,
}

impl Default for FetchSection {
    fn default() -> Self {
        Self {
            uri: "sip:offline@example.com".into(),
            window: 32,
            keep_delivered_days: 0,
            no_messages_text: "You have no new messages".into(),
            plain_prefix: "{sender}, {time}: ".into(),
        }
    }
}

/// How message-waiting is signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MwiMode {
    /// PUBLISH to the proxy's presence server (RFC 3903).
    Publish,
    /// Answer SUBSCRIBE and NOTIFY directly (RFC 6665).
    Notify,
    Both,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MwiSection {
    pub mode: MwiMode,
    /// `transport:host:port` where PUBLISH goes.
    pub proxy: String,
    pub expires: u32,
    /// From of the PUBLISH; empty means the mailbox AoR.
    pub from: String,
    /// Also emit `Voice-Message: 0/0` (some phones ignore a summary without it).
    pub voice_message_line: bool,
    /// RFC 3842 §5.2 message headers of the newest N messages; 0 for none.
    pub message_headers: usize,
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
    /// Least time between two PUBLISHes of one mailbox; changes meanwhile coalesce.
    pub min_publish_interval_ms: u64,
    /// Start-up publishes per second (every mailbox with waiting messages is republished).
    pub startup_publish_rate: u32,
    /// Digest credentials for 401/407 on PUBLISH.
    pub auth_user: String,
    pub auth_password: String,
    pub subscribe_min_expires: u32,
    pub subscribe_max_expires: u32,
}

impl Default for MwiSection {
    fn default() -> Self {
        Self {
            mode: MwiMode::Publish,
            proxy: "udp:127.0.0.1:5060".into(),
            expires: 3600,
            from: String::new(),
            voice_message_line: false,
            message_headers: 0,
            backoff_initial_secs: 2,
            backoff_max_secs: 300,
            min_publish_interval_ms: 1000,
            startup_publish_rate: 50,
            auth_user: String::new(),
            auth_password: String::new(),
            subscribe_min_expires: 60,
            subscribe_max_expires: 86_400,
        }
    }
}

/// What to do with a deposit for a full mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailboxFullPolicy {
    /// 486 Busy Here with a Warning saying the mailbox is full.
    Reject,
    /// Answer and tell the caller in the greeting that nothing can be kept.
    Accept,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DepositSection {
    pub greeting: String,
    pub idle_timeout_secs: u64,
    /// Accept deposits from sources outside `trusted_proxies` (sender marked unverified).
    pub accept_untrusted: bool,
    /// Content types stored besides `text/*` and CPIM-wrapped `text/*`.
    pub extra_types: Vec<String>,
    pub mailbox_full: MailboxFullPolicy,
}

impl Default for DepositSection {
    fn default() -> Self {
        Self {
            greeting: "I am offline but you can type a message".into(),
            idle_timeout_secs: 90,
            accept_untrusted: false,
            extra_types: Vec::new(),
            mailbox_full: MailboxFullPolicy::Reject,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    pub format: LogFormat,
    /// Append to this file (reopened on SIGHUP); empty logs to stderr.
    pub file: String,
    /// `RUST_LOG`-style filter; the `RUST_LOG` environment variable wins.
    pub level: String,
    /// Log message bodies (off: bodies are private).
    pub log_bodies: bool,
}

/// Prometheus endpoint (`crate::metrics`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// `host:port` serving `GET /metrics`; empty (the default) serves nothing.
    pub listen: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            file: String::new(),
            level: "info".into(),
            log_bodies: false,
        }
    }
}

/// Abuse limits (`crate::limits`); every one answered with its status and logged at most once
/// per `log_interval_secs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Chat sessions (deposit and fetch) at once; more get 503 with Retry-After.
    pub max_sessions: usize,
    /// Chat sessions at once from one source address outside `sip.trusted_proxies` (a
    /// trusted proxy carries everyone's calls: only `max_sessions` applies to it); 503.
    pub max_sessions_per_source: usize,
    /// Retry-After (seconds) of a 503 or 486 sent for a limit.
    pub retry_after_secs: u32,
    /// SIP start line and headers, bytes; larger is answered 400 (sip-core framing).
    pub max_sip_head_bytes: usize,
    /// SIP body (Content-Length), bytes; larger is answered 400 (sip-core framing).
    pub max_sip_body_bytes: usize,
    /// Accepted SIP TCP/TLS connections at once; more are closed at once.
    pub max_sip_tcp_connections: usize,
    /// Accepted MSRP connections at once, per MSRP listener (TLS handshakes included); more
    /// are closed at once. Each chat session holds one, so at least `max_sessions`.
    pub max_msrp_connections: usize,
    /// Body of one MSRP chunk, bytes; larger is answered 413 (the message size is
    /// `msrp.max_message_bytes`, also 413).
    pub max_msrp_chunk_bytes: usize,
    /// Received SENDs of one deposit session whose commit (and so whose 200) is pending; past
    /// it the session stops reading its connection until the oldest is answered.
    pub max_pending_sends: usize,
    /// Messages one caller (the asserted sender) may deposit per minute, sustained; beyond,
    /// a MESSAGE or a new chat INVITE gets 486 with Retry-After and a SEND gets MSRP 403.
    /// 0 turns the limit off.
    pub deposit_rate_per_minute: u32,
    /// Messages a caller may deposit in a burst above the rate.
    pub deposit_burst: u32,
    /// A limit that keeps being hit is logged at most once per this many seconds, with the
    /// count of hits in between.
    pub log_interval_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_sessions: 1000,
            max_sessions_per_source: 20,
            retry_after_secs: 30,
            max_sip_head_bytes: 16 * 1024,
            max_sip_body_bytes: 64 * 1024,
            max_sip_tcp_connections: 1024,
            max_msrp_connections: 16_384,
            max_msrp_chunk_bytes: 1024 * 1024,
            max_pending_sends: 64,
            deposit_rate_per_minute: 600,
            deposit_burst: 300,
            log_interval_secs: 10,
        }
    }
}

/// A transport-qualified address such as `udp:127.0.0.1:5070` or `tcp:[::1]:5070`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl std::str::FromStr for TransportAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (transport, rest) = s
            .split_once(':')
            .ok_or_else(|| "expected transport:host:port, e.g. udp:127.0.0.1:5070".to_string())?;
        let transport = match transport.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => return Err(format!("unknown transport `{other}` (udp, tcp or tls)")),
        };
        let addr = rest
            .parse::<SocketAddr>()
            .map_err(|e| format!("`{rest}` is not an IP address and port: {e}"))?;
        Ok(Self { transport, addr })
    }
}

impl std::fmt::Display for TransportAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        write!(f, "{t}:{}", self.addr)
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config = Self::parse(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that serde cannot: addresses, URIs, ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.sip.listen.is_empty() {
            bail!("key `sip.listen` is empty: give at least one transport:host:port");
        }
        for (i, l) in self.sip.listen.iter().enumerate() {
            l.parse::<TransportAddr>()
                .map_err(|why| anyhow::anyhow!("key `sip.listen[{i}]` = {l:?}: {why}"))?;
        }
        for (i, p) in self.sip.trusted_proxies.iter().enumerate() {
            parse_net(p)
                .map_err(|why| anyhow::anyhow!("key `sip.trusted_proxies[{i}]` = {p:?}: {why}"))?;
        }
        if self.sip.tcp_backlog < 1 {
            bail!("key `sip.tcp_backlog` = 0: must be at least 1 (4096 recommended)");
        }
        self.msrp_listen()?;
        if self.msrp.chunk_size < 64 {
            bail!(
                "key `msrp.chunk_size` = {}: must be at least 64 bytes",
                self.msrp.chunk_size
            );
        }
        if self.msrp.send_timeout_secs == 0 {
            bail!("key `msrp.send_timeout_secs` = 0: must be at least 1");
        }
        if self.store.path.as_os_str().is_empty() {
            bail!("key `store.path` is empty: give a file name for the SQLite database");
        }
        if self.store.group_commit_max_rows == 0 {
            bail!("key `store.group_commit_max_rows` = 0: must be at least 1");
        }
        if self.store.max_message_bytes == 0 {
            bail!("key `store.max_message_bytes` = 0: must be at least 1");
        }
        let uri = &self.fetch.uri;
        if !(uri.starts_with("sip:") || uri.starts_with("sips:")) || !uri.contains('@') {
            bail!("key `fetch.uri` = {uri:?}: expected a SIP URI such as sip:offline@example.com");
        }
        if self.fetch.window == 0 || self.fetch.window > 1024 {
            bail!(
                "key `fetch.window` = {}: must be between 1 and 1024",
                self.fetch.window
            );
        }
        if self.mwi.mode != MwiMode::Notify && self.mwi_proxy()?.transport == Transport::Tls {
            bail!(
                "key `mwi.proxy` = {:?}: PUBLISH over TLS is not supported; use udp or tcp",
                self.mwi.proxy
            );
        }
        if self.mwi.expires < 60 {
            bail!(
                "key `mwi.expires` = {}: must be at least 60 seconds",
                self.mwi.expires
            );
        }
        if self.mwi.min_publish_interval_ms > 60_000 {
            bail!(
                "key `mwi.min_publish_interval_ms` = {}: at most 60000 (a minute); phones would show a stale count",
                self.mwi.min_publish_interval_ms
            );
        }
        if self.mwi.backoff_initial_secs == 0
            || self.mwi.backoff_max_secs < self.mwi.backoff_initial_secs
        {
            bail!(
                "keys `mwi.backoff_initial_secs` = {} / `mwi.backoff_max_secs` = {}: need 0 < initial <= max",
                self.mwi.backoff_initial_secs,
                self.mwi.backoff_max_secs
            );
        }
        if self.mwi.subscribe_min_expires > self.mwi.subscribe_max_expires {
            bail!(
                "keys `mwi.subscribe_min_expires` = {} > `mwi.subscribe_max_expires` = {}",
                self.mwi.subscribe_min_expires,
                self.mwi.subscribe_max_expires
            );
        }
        if self.mwi.startup_publish_rate == 0 {
            bail!("key `mwi.startup_publish_rate` = 0: must be at least 1 per second");
        }
        if self.deposit.idle_timeout_secs == 0 {
            bail!("key `deposit.idle_timeout_secs` = 0: must be at least 1");
        }
        self.validate_limits()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow::anyhow!("key `log.level` = {:?}: {e}", self.log.level))?;
        self.metrics_listen()?;
        self.msrp_tls_listen()?;
        let no_pair = self.tls.cert.as_os_str().is_empty() || self.tls.key.as_os_str().is_empty();
        if no_pair && self.needs_tls()? {
            bail!(
                "keys `tls.cert` / `tls.key` are empty: a `tls:` entry in `sip.listen` or \
                 `msrp.tls_listen` needs a PEM certificate and key"
            );
        }
        Ok(())
    }

    /// True when a SIP `tls:` listener or the MSRP TLS listener is configured.
    pub fn needs_tls(&self) -> anyhow::Result<bool> {
        let sip_tls = self
            .sip_listen()?
            .iter()
            .any(|l| l.transport == Transport::Tls);
        Ok(sip_tls || self.msrp_tls_listen()?.is_some())
    }

    /// The parsed MSRP TLS listen address; `None` when MSRP over TLS is off.
    pub fn msrp_tls_listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.msrp.tls_listen.is_empty() {
            return Ok(None);
        }
        self.msrp.tls_listen.parse().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "key `msrp.tls_listen` = {:?}: expected host:port such as 127.0.0.1:2856, or \"\" for off ({e})",
                self.msrp.tls_listen
            )
        })
    }

    fn validate_limits(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        for (key, value, min) in [
            ("max_sessions", l.max_sessions, 1),
            ("max_sessions_per_source", l.max_sessions_per_source, 1),
            ("max_sip_head_bytes", l.max_sip_head_bytes, 1024),
            ("max_sip_body_bytes", l.max_sip_body_bytes, 1024),
            ("max_sip_tcp_connections", l.max_sip_tcp_connections, 1),
            ("max_msrp_chunk_bytes", l.max_msrp_chunk_bytes, 1024),
            ("max_pending_sends", l.max_pending_sends, 1),
        ] {
            if value < min {
                bail!("key `limits.{key}` = {value}: must be at least {min}");
            }
        }
        if l.log_interval_secs == 0 {
            bail!("key `limits.log_interval_secs` = 0: must be at least 1");
        }
        if l.max_msrp_connections < l.max_sessions {
            bail!(
                "key `limits.max_msrp_connections` = {}: must be at least `limits.max_sessions` \
                 ({}): each chat session holds one MSRP connection",
                l.max_msrp_connections,
                l.max_sessions
            );
        }
        Ok(())
    }

    /// The parsed metrics address; `None` when metrics are off.
    pub fn metrics_listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics.listen.parse().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "key `metrics.listen` = {:?}: expected host:port such as 127.0.0.1:9090, or \"\" for off ({e})",
                self.metrics.listen
            )
        })
    }

    /// The parsed SIP listen addresses (validated by [`Config::validate`]).
    pub fn sip_listen(&self) -> anyhow::Result<Vec<TransportAddr>> {
        self.sip
            .listen
            .iter()
            .map(|l| {
                l.parse()
                    .map_err(|why| anyhow::anyhow!("key `sip.listen` = {l:?}: {why}"))
            })
            .collect()
    }

    /// The parsed MSRP listen address.
    pub fn msrp_listen(&self) -> anyhow::Result<SocketAddr> {
        self.msrp.listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "key `msrp.listen` = {:?}: expected host:port such as 127.0.0.1:2855 ({e})",
                self.msrp.listen
            )
        })
    }

    /// The parsed PUBLISH destination.
    pub fn mwi_proxy(&self) -> anyhow::Result<TransportAddr> {
        self.mwi
            .proxy
            .parse()
            .map_err(|why| anyhow::anyhow!("key `mwi.proxy` = {:?}: {why}", self.mwi.proxy))
    }

    /// The parsed trusted proxy networks.
    pub fn trusted_networks(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.sip
            .trusted_proxies
            .iter()
            .map(|p| parse_net(p).map_err(|why| anyhow::anyhow!("{p:?}: {why}")))
            .collect()
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.deposit.idle_timeout_secs)
    }
}

/// An address (`127.0.0.1`) or a network (`10.0.0.0/8`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| "expected an IP address or CIDR such as 127.0.0.1/32".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_spec_defaults() {
        let c = Config::parse("").expect("empty config is valid");
        assert_eq!(c.sip.listen, ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]);
        assert_eq!(c.sip.trusted_proxies, ["127.0.0.1/32"]);
        assert_eq!(c.msrp.listen, "127.0.0.1:2855");
        assert_eq!(c.store.path, PathBuf::from("mwi-store.db"));
        assert_eq!(c.fetch.uri, "sip:offline@example.com");
        assert_eq!(c.mwi.mode, MwiMode::Publish);
        assert_eq!(c.mwi.proxy, "udp:127.0.0.1:5060");
        assert_eq!(c.mwi.expires, 3600);
        assert_eq!(c.deposit.idle_timeout_secs, 90);
        assert_eq!(
            c.deposit.greeting,
            "I am offline but you can type a message"
        );
        assert!(c.sip.tcp_backlog >= 4096);
    }

    #[test]
    fn spec_section_7_example_parses() {
        let text = r#"
[sip]
listen = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
trusted_proxies = ["127.0.0.1/32"]
[msrp]
listen = "127.0.0.1:2855"
[store]
path = "mwi-store.db"
[fetch]
uri = "sip:offline@example.com"
[mwi]
mode = "both"
proxy = "udp:127.0.0.1:5060"
expires = 3600
[deposit]
greeting = "I am offline but you can type a message"
idle_timeout_secs = 90
"#;
        let c = Config::parse(text).expect("spec example is valid");
        assert_eq!(c.mwi.mode, MwiMode::Both);
        let listen = c.sip_listen().expect("listen parses");
        assert_eq!(listen[1].transport, Transport::Tcp);
        assert_eq!(listen[1].addr.port(), 5070);
    }

    #[test]
    fn msrp_connections_below_the_sessions_are_refused() {
        let err = Config::parse("[limits]\nmax_sessions = 10\nmax_msrp_connections = 5\n")
            .expect_err("fewer connections than sessions");
        let msg = err.to_string();
        assert!(
            msg.contains("limits.max_msrp_connections") && msg.contains("max_sessions"),
            "{msg}"
        );
        let c = Config::parse("[limits]\nmax_sessions = 10\nmax_msrp_connections = 10\n")
            .expect("as many connections as sessions");
        assert_eq!(c.limits.max_msrp_connections, 10);
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = Config::parse("[sip]\nlisten_on = []\n").expect_err("unknown key");
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_value_and_reason() {
        let err = Config::parse("[sip]\nlisten = [\"sctp:1.2.3.4:5\"]\n").expect_err("bad");
        let msg = err.to_string();
        assert!(
            msg.contains("sip.listen[0]") && msg.contains("sctp"),
            "{msg}"
        );

        let err = Config::parse("[sip]\ntrusted_proxies = [\"10.0.0.0/99\"]\n").expect_err("bad");
        assert!(err.to_string().contains("sip.trusted_proxies[0]"), "{err}");

        let err = Config::parse("[fetch]\nuri = \"offline\"\n").expect_err("bad");
        assert!(err.to_string().contains("fetch.uri"), "{err}");

        let err = Config::parse("[mwi]\nmode = \"shout\"\n").expect_err("bad");
        assert!(err.to_string().contains("shout"), "{err}");

        let err = Config::parse("[msrp]\nlisten = \"nowhere\"\n").expect_err("bad");
        assert!(err.to_string().contains("msrp.listen"), "{err}");
    }

    #[test]
    fn tls_listeners_need_a_certificate_and_publish_stays_off_tls() {
        let c = Config::parse(
            "[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n[msrp]\ntls_listen = \"127.0.0.1:2856\"\n\
             [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .expect("valid");
        assert_eq!(c.sip_listen().expect("parses")[0].transport, Transport::Tls);
        assert_eq!(
            c.sip_listen().expect("parses")[0].to_string(),
            "tls:127.0.0.1:5061"
        );
        assert_eq!(
            c.msrp_tls_listen().expect("parses"),
            Some("127.0.0.1:2856".parse().expect("addr"))
        );
        assert!(c.needs_tls().expect("parses"));
        assert!(!Config::default().needs_tls().expect("parses"));

        let err = Config::parse("[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n").expect_err("no cert");
        assert!(err.to_string().contains("tls.cert"), "{err}");
        let err = Config::parse("[msrp]\ntls_listen = \"127.0.0.1:2856\"\n").expect_err("no cert");
        assert!(err.to_string().contains("tls.cert"), "{err}");
        let err = Config::parse("[msrp]\ntls_listen = \"nowhere\"\n").expect_err("bad");
        assert!(err.to_string().contains("msrp.tls_listen"), "{err}");
        let err = Config::parse("[mwi]\nproxy = \"tls:127.0.0.1:5061\"\n").expect_err("tls proxy");
        assert!(err.to_string().contains("mwi.proxy"), "{err}");
    }

    #[test]
    fn ipv6_listen_and_plain_address_proxies() {
        let c = Config::parse(
            "[sip]\nlisten = [\"udp:[::1]:5070\"]\ntrusted_proxies = [\"::1\", \"10.1.2.3\"]\n",
        )
        .expect("valid");
        assert!(c.sip_listen().expect("parses")[0].addr.is_ipv6());
        assert_eq!(c.trusted_networks().expect("parses").len(), 2);
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// Every key the server knows appears in the commented example, and the example parses.
    #[test]
    fn example_covers_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mwi-store.toml");
        let example = Config::load(&path).expect("the example config is valid");
        let text = std::fs::read_to_string(&path).expect("read example");
        let defaults = toml::Value::try_from(Config::default()).expect("serialise defaults");
        let example_value: toml::Value = toml::from_str(&text).expect("example is TOML");
        let sections = defaults.as_table().expect("table");
        for (section, keys) in sections {
            for key in keys.as_table().expect("section table").keys() {
                assert!(
                    example_value
                        .get(section)
                        .and_then(|s| s.get(key))
                        .is_some(),
                    "examples/mwi-store.toml lacks `{section}.{key}`"
                );
            }
        }
        assert_eq!(example.fetch.uri, "sip:offline@example.com");
    }
}
