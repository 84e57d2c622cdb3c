// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegate-backoffice metrics`, the binary as an operator runs it, against a real nats-server:
//! a gate's heartbeat in the status bucket is on `/metrics` for Prometheus, a value that is no
//! gate's status is not, and SIGTERM stops the server cleanly.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use facegate_fleet::health::{GateStatus, Mode, STATUS_BUCKET, STATUS_SCHEMA_VERSION, State};
use facegate_fleet_servers::{NatsServer, free_port, scrape_metrics};

fn status(gate: &str) -> GateStatus {
    GateStatus {
        schema_version: STATUS_SCHEMA_VERSION,
        gate: gate.parse().unwrap(),
        sent_at: Utc::now(),
        heartbeat_s: 60,
        state: State::Running,
        mode: Mode::Normal,
        version: "0.1.0".into(),
        uptime_s: 5,
        restarts: 0,
        fps: 15.0,
        passages_today: 3,
        denied_today: 1,
        outbox_depth: 0,
        last_sequence: 4,
        gallery_generation: 2,
        gallery_size: 3,
        fleet_generation: None,
        lease_issued_at: None,
        lease_expires_at: None,
    }
}

#[test]
fn the_binary_serves_each_gates_heartbeat_and_stops_on_sigterm() {
    let nats = NatsServer::start("").expect("nats-server starts");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        facegate_backoffice::prepare_broker(&client).await.unwrap();
        let bucket = async_nats::jetstream::new(client)
            .get_key_value(STATUS_BUCKET)
            .await
            .unwrap();
        bucket
            .put("gate-1", status("gate-1").to_json().into())
            .await
            .unwrap();
        // Under the wrong key: not gate-7's status, so not on /metrics.
        bucket
            .put("gate-7", status("gate-1").to_json().into())
            .await
            .unwrap();
    });

    let port = free_port().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_facegate-backoffice"))
        .args(["metrics", "--nats", &nats.url(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let scraped = loop {
        match scrape_metrics(([127, 0, 0, 1], port).into()) {
            Ok(body) if body.contains(r#"facegate_gate_up{gate="gate-1"} 1"#) => break body,
            other => assert!(
                Instant::now() < deadline,
                "no gate-1 on /metrics: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        scraped.contains(r#"facegate_gate_passages_today{gate="gate-1"} 3"#),
        "{scraped}"
    );
    assert!(scraped.contains("facegate_fleet_gates 1"), "{scraped}");
    assert!(!scraped.contains("gate-7"), "{scraped}");
    // No change was ever published: the office's generation is 0.
    assert!(
        scraped.contains("facegate_fleet_gallery_generation 0"),
        "{scraped}"
    );

    let terminated = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let exit = server.wait().unwrap();
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(exit.success(), "{exit}: {log}");
    assert!(
        log.contains("gate status gate-7: the status is gate gate-1's; ignored"),
        "{log}"
    );
}
