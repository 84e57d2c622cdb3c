// SPDX-License-Identifier: MIT OR Apache-2.0
//! Real servers on loopback for the fleet's tests: a `nats-server` with JetStream
//! ([`NatsServer`]) and a PostgreSQL cluster ([`Postgres`]), each with its own temporary
//! directory (config, store, socket, log) that goes away with it.
//!
//! Plain blocking Rust, so a test can start, kill and restart a server from any thread or
//! runtime. No server binary is downloaded: `make setup` installs Debian's packages, and a
//! missing binary is an error naming that (tests fail rather than skip, so a broken setup is
//! seen).

mod nats;
mod postgres;
mod tls;

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub use nats::NatsServer;
pub use postgres::Postgres;

/// How long a server has to accept connections after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback TCP port nobody listens on right now: the kernel picks it for a listener that is
/// then dropped. Another process could take it before the server binds it; on a test machine
/// that is rare enough, and the server's start fails loudly if it happens.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| anyhow::anyhow!("binding a free port on 127.0.0.1: {e}"))?;
    Ok(listener.local_addr()?.port())
}

/// One `GET /metrics` of the back office's metrics server at `address`, as Prometheus makes it:
/// the body of a 200 answer, or the whole answer as the error.
pub fn scrape_metrics(address: std::net::SocketAddr) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut connection = TcpStream::connect(address)?;
    write!(
        connection,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    connection.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => anyhow::bail!("/metrics at {address} answered {response:?}"),
    }
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The last `lines` lines of a log file, joined with " | " so an error stays one line.
fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            match tail.is_empty() {
                true => format!("{} is empty", path.display()),
                false => format!("{}: {}", path.display(), tail.join(" | ")),
            }
        }
        Err(e) => format!("{}: {e}", path.display()),
    }
}

/// Waits up to [`START_TIMEOUT`] for `port` to accept, while `exited` reports nothing (it
/// returns the exit status of a server that died).
fn wait_until_accepting(
    port: u16,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if accepts(port) {
            return Ok(());
        }
        if let Some(status) = exited() {
            return Err(format!("exited ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not accepting on 127.0.0.1:{port} after {}s",
                START_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
