// SPDX-License-Identifier: MIT OR Apache-2.0
//! A `nats-server` with JetStream on a free loopback port.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::{free_port, log_tail, wait_until_accepting};

/// Debian's nats-server (`make setup` installs it).
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A running `nats-server`: its config, JetStream store and log are in a temporary directory,
/// kept across [`kill9`](NatsServer::kill9) and [`restart`](NatsServer::restart) so a restart
/// finds the streams the broker had written. Dropping it kills the server.
pub struct NatsServer {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    // Last: removed after the server is gone.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server listening on 127.0.0.1 with JetStream, plus `extra_config` (nats-server
    /// config text, e.g. an `authorization { users = [...] }` block), and waits until it
    /// accepts connections.
    pub fn start(extra_config: &str) -> anyhow::Result<NatsServer> {
        NatsServer::start_with(extra_config, false)
    }

    /// [`start`](NatsServer::start), with TLS required of every client, as the shipped broker
    /// configuration runs: the server's certificate (for 127.0.0.1 and localhost) is signed
    /// by a CA made for this server alone, whose certificate is [`ca_file`](NatsServer::ca_file).
    pub fn start_tls(extra_config: &str) -> anyhow::Result<NatsServer> {
        NatsServer::start_with(extra_config, true)
    }

    fn start_with(extra_config: &str, tls: bool) -> anyhow::Result<NatsServer> {
        if !Path::new(NATS_SERVER).is_file() {
            bail!("nats-server not found: run `make setup` (Debian package nats-server)");
        }
        let dir = tempfile::Builder::new()
            .prefix("facegate-nats-")
            .tempdir()
            .context("creating the nats-server's temporary directory")?;
        let port = free_port()?;
        let store = dir.path().join("jetstream");
        let config = dir.path().join("nats-server.conf");
        let tls_config = match tls {
            true => {
                let files = crate::tls::write_test_pki(dir.path())?;
                format!(
                    "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                    files.cert, files.key
                )
            }
            false => String::new(),
        };
        // The store path is quoted: nats-server's config syntax takes a quoted string as is.
        let text = format!(
            "# Written by facegate-fleet-servers for one test.\n\
             listen: \"127.0.0.1:{port}\"\n\
             jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
             {tls_config}{extra_config}\n"
        );
        fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut server = NatsServer {
            port,
            config,
            log: dir.path().join("nats-server.log"),
            child: None,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`, or `tls://` for a server started with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_file().is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate a client checks a TLS server against (`None` without TLS).
    pub fn ca_file(&self) -> Option<PathBuf> {
        Some(self.dir.path().join(crate::tls::CA_FILE)).filter(|ca| ca.is_file())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running server's process id (for its CPU time and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's temporary directory (config, `jetstream` store, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (its stdout and stderr, across restarts).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server with SIGKILL, as a crash or a power cut would (nothing is flushed), and
    /// waits for it to be gone.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // kill() is SIGKILL on Unix; an error means it has already exited.
            let _ = child.kill();
            child.wait().context("waiting for the killed nats-server")?;
        }
        Ok(())
    }

    /// Stops the server with SIGTERM (it closes its connections and store), SIGKILL after 5 s.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id()).context("nats-server's pid")?;
        // SAFETY: kill(2) with a pid this process spawned and has not yet waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child
            .wait()
            .context("waiting for the stopped nats-server")?;
        Ok(())
    }

    /// Starts the server again (after [`kill9`](NatsServer::kill9) or
    /// [`stop`](NatsServer::stop)) on the same port with the same config and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9()?;
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let stderr = log.try_clone()?;
        let child = Command::new(NATS_SERVER)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("starting {NATS_SERVER}"))?;
        let child = self.child.insert(child);
        let waited = wait_until_accepting(self.port, || match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        });
        if let Err(why) = waited {
            let _ = self.kill9();
            bail!(
                "nats-server on port {} did not start: {why}; {}",
                self.port,
                log_tail(&self.log, 8)
            );
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
