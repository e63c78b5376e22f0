//! Issue 9, the load generator: `bench deposit` against the real server. Its callers run their
//! MSRP legs on bare TCP connections (bench/wire.rs): INVITE, bind, greeting, paced or
//! pipelined SENDs, BYE. Every 200 it counts must be a stored row with the caller's body, and
//! every session must end with a BYE the server answers 200 (closing the MSRP connection first
//! would have the server end the call, and the BYE get 481).

use e2e_tests::{open_store, Server};
use mwi_store::bench::deposit::{self, DepositArgs};
use mwi_store::bench::sysinfo::cpu_seconds;
use mwi_store::bench::Target;

fn args(server: &Server, window: usize, rate: f64) -> DepositArgs {
    DepositArgs {
        target: Target {
            sip: format!("udp:{}", server.sip_udp),
            local_ip: "127.0.0.1".parse().expect("loopback"),
            time_limit_secs: 60,
            db: Some(server.db.clone()),
            json: false,
        },
        concurrency: 4,
        messages: 30,
        mailboxes: 8,
        user_prefix: "user".into(),
        domain: "example.com".into(),
        per_session: 0,
        window,
        body_bytes: 100,
        rate,
        callers_per_socket: 2,
        presence: None,
        publish_delay_ms: 5,
        latency_trace: None,
    }
}

async fn run_and_check(
    server: &Server,
    window: usize,
    rate: f64,
    sessions: f64,
) -> anyhow::Result<()> {
    let trace = tempfile::NamedTempFile::new()?;
    let cpu_before = cpu_seconds("self")?;
    let report = deposit::run(DepositArgs {
        latency_trace: Some(trace.path().to_path_buf()),
        ..args(server, window, rate)
    })
    .await?;
    let cpu_used = cpu_seconds("self")? - cpu_before;
    println!("{}", report.to_table());
    report.verdict()?;
    assert_eq!(report.get("messages_stored"), Some(120.0));
    assert_eq!(report.get("messages_failed"), Some(0.0));
    assert_eq!(report.get("sessions"), Some(sessions));
    // The generator's own CPU during the run: within what this process used around it
    // (whole 10 ms ticks, so a short run may show 0).
    let cpu = report.get("generator_cpu_seconds").unwrap_or(f64::NAN);
    assert!(
        (0.0..=cpu_used + 1e-9).contains(&cpu),
        "generator CPU {cpu} s, process {cpu_used} s"
    );
    // One line per answered SEND, in the order sent, after the start.
    let text = std::fs::read_to_string(trace.path())?;
    assert!(text.starts_with("# started "), "{text}");
    let sent: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        })
        .collect();
    assert_eq!(sent.len(), 120);
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "sorted: {sent:?}");
    let p99 = report.get("msrp_200_p99_ms").unwrap_or(f64::NAN);
    assert!(p99 > 0.0 && p99 < 10_000.0, "p99 {p99} ms");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_deposit_counts_only_what_the_server_stored() -> anyhow::Result<()> {
    let server = Server::start("[mwi]\nmode = \"notify\"\n")?;
    // Pipelined (8 in flight): four callers, two mailboxes each, 15 messages a session.
    run_and_check(&server, 8, 0.0, 8.0).await?;
    // Paced at 400 SENDs/s: caller w's first session is (w + 1) / 4 of the others (4, 8, 12
    // and 15 SENDs), so three callers need a third session for the rest.
    run_and_check(&server, 1, 400.0, 11.0).await?;

    let store = open_store(&server.db)?;
    let mut rows = 0;
    for k in 0..8 {
        let mailbox = format!("sip:user{k}@example.com");
        let stored = store.messages(&mailbox, true).await?;
        for m in &stored {
            assert!(m.message.sender_aor.starts_with("sip:caller"), "{m:?}");
            assert_eq!(m.message.content_type, "text/plain;charset=UTF-8");
            assert_eq!(m.message.body.len(), 100);
        }
        rows += stored.len();
    }
    assert_eq!(rows, 240);
    Ok(())
}
