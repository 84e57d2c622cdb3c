// SPDX-License-Identifier: MIT OR Apache-2.0
//! Each server starts, answers, and comes back after being taken away.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use facegate_fleet_servers::{NatsServer, Postgres};

/// The first line a NATS server sends a new client: `INFO {...}`.
fn nats_info(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn nats_server_answers_and_comes_back_after_kill_9() {
    let mut nats = NatsServer::start("").unwrap();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let info = nats_info(nats.port());
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    nats.kill9().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", nats.port())).is_err());
    nats.restart().unwrap();
    assert!(nats_info(nats.port()).starts_with("INFO "));
    nats.stop().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", nats.port())).is_err());
}

#[test]
fn nats_server_takes_extra_config() {
    let nats = NatsServer::start("authorization { users = [ { user: gate, password: secret } ] }")
        .unwrap();
    let info = nats_info(nats.port());
    assert!(info.contains("\"auth_required\":true"), "{info}");
}

#[test]
fn a_bad_nats_config_fails_naming_the_log() {
    let error = NatsServer::start("this is { not config").err().unwrap();
    let message = error.to_string();
    assert!(message.contains("did not start"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn postgres_answers_and_keeps_its_data_across_a_stop() {
    let mut postgres = Postgres::start().unwrap();
    let connection = postgres.connection_string();
    assert!(connection.contains("dbname=ledger"), "{connection}");
    assert!(connection.contains(&format!("port={}", postgres.port())));
    postgres
        .psql("CREATE TABLE t (n int); INSERT INTO t VALUES (7)")
        .unwrap();
    postgres.stop().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", postgres.port())).is_err());
    assert!(postgres.psql("SELECT 1").is_err());
    postgres.start_again().unwrap();
    assert_eq!(postgres.psql("SELECT n FROM t").unwrap(), "7");
    assert_eq!(postgres.psql("SHOW fsync").unwrap(), "on");
}
