// SPDX-License-Identifier: MIT OR Apache-2.0
//! A PostgreSQL cluster of its own on a free loopback port, with a database `ledger`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::{free_port, log_tail};

/// Where Debian puts each PostgreSQL major version's server binaries.
const POSTGRESQL_LIB: &str = "/usr/lib/postgresql";
/// The cluster's superuser (trust authentication: loopback only, for tests).
const USER: &str = "facegate";
/// The database the back office's ledger is created in.
const DATABASE: &str = "ledger";
/// The Debian account the server runs as when the tests run as root (PostgreSQL refuses root).
const SYSTEM_USER: &str = "postgres";

/// A running PostgreSQL cluster in a temporary directory: data directory, socket directory
/// and log. [`stop`](Postgres::stop) and [`start_again`](Postgres::start_again) take the
/// database away for a while and bring it back with its data; dropping it stops it at once
/// (`pg_ctl -m immediate`).
pub struct Postgres {
    bin: PathBuf,
    port: u16,
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    /// Running as root: each server binary runs as [`SYSTEM_USER`] through `runuser`.
    as_system_user: bool,
    running: bool,
    // Last: removed after the server is gone.
    dir: TempDir,
}

impl Postgres {
    /// Creates a cluster (initdb, trust authentication, UTF-8), starts it on 127.0.0.1 with
    /// fsync on (the ledger's durability is what the tests are about), and creates the
    /// database `ledger`.
    pub fn start() -> anyhow::Result<Postgres> {
        let bin = newest_bin_dir()?;
        // SAFETY: geteuid(2) has no preconditions.
        let as_system_user = unsafe { libc::geteuid() } == 0;
        // Under /tmp (traversable by everyone), readable by the server's own user.
        let dir = tempfile::Builder::new()
            .prefix("facegate-postgres-")
            .tempdir_in(std::env::temp_dir())
            .context("creating PostgreSQL's temporary directory")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", dir.path().display()))?;
        let socket = dir.path().join("socket");
        fs::create_dir(&socket).with_context(|| format!("creating {}", socket.display()))?;
        if as_system_user {
            let mut chown = Command::new("chown");
            chown
                .arg("-R")
                .arg(format!("{SYSTEM_USER}:"))
                .arg(dir.path());
            run(
                &mut chown,
                "chown (running as root, the server runs as user postgres)",
            )?;
        }
        let mut postgres = Postgres {
            bin,
            port: free_port()?,
            data: dir.path().join("data"),
            socket,
            log: dir.path().join("postgres.log"),
            as_system_user,
            running: false,
            dir,
        };
        let mut initdb = postgres.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&postgres.data)
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            // The cluster is thrown away; its final flush only slows every test down.
            .arg("--no-sync");
        run(&mut initdb, "initdb")?;
        postgres.start_again()?;
        let mut createdb = Command::new(postgres.bin.join("createdb"));
        createdb
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &postgres.port.to_string(),
                "-U",
                USER,
            ])
            .arg(DATABASE);
        run(&mut createdb, "createdb ledger")?;
        Ok(postgres)
    }

    /// A libpq / tokio-postgres keyword connection string for the database `ledger`.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname={DATABASE}",
            self.port
        )
    }

    /// The postmaster's process id, from its `postmaster.pid` (the backends are its children).
    pub fn pid(&self) -> anyhow::Result<u32> {
        let file = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("{}: the server is not running", file.display()))?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("{}: no process id on its first line", file.display()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temporary directory (`data`, `socket`, `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL with `psql` on the database `ledger`; returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(self.connection_string())
            .args(["-c", sql]);
        let output = run(&mut psql, "psql")?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned())
    }

    /// Stops the server (`pg_ctl -m fast`: sessions are ended, what was committed stays).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Starts the server again on the same port with the same data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.running {
            return Ok(());
        }
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.socket.display(),
            self.port
        );
        let mut pg_ctl = self.server_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "15", "-o", &options, "start"]);
        if let Err(e) = run(&mut pg_ctl, "pg_ctl start") {
            bail!(
                "PostgreSQL on port {} did not start: {e}; {}",
                self.port,
                log_tail(&self.log, 6)
            );
        }
        self.running = true;
        Ok(())
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut pg_ctl = self.server_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "15", "stop"]);
        run(&mut pg_ctl, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// A server binary (initdb, pg_ctl), run as [`SYSTEM_USER`] when this process is root,
    /// from the temporary directory (that user may not be able to enter the current one).
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match self.as_system_user {
            true => {
                let mut runuser = Command::new("runuser");
                runuser.args(["-u", SYSTEM_USER, "--"]).arg(path);
                runuser
            }
            false => Command::new(path),
        };
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
    }
}

/// `/usr/lib/postgresql/<newest version>/bin`, the newest that has `initdb`.
fn newest_bin_dir() -> anyhow::Result<PathBuf> {
    let missing = || {
        anyhow::anyhow!(
            "PostgreSQL not found (no {POSTGRESQL_LIB}/*/bin/initdb): run `make setup` (installs Debian's postgresql)"
        )
    };
    let entries = fs::read_dir(POSTGRESQL_LIB).map_err(|_| missing())?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(missing)
}

/// "15" → [15], "9.6" → [9, 6]; None for anything that is not a version.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Runs a command to completion; its failure is one line with the end of what it printed.
fn run(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: starting {:?}", command.get_program()))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let text = match text.trim().is_empty() {
            true => String::from_utf8_lossy(&output.stdout).into_owned(),
            false => text.into_owned(),
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        bail!(
            "{what} failed ({}): {}",
            output.status,
            lines[lines.len().saturating_sub(4)..].join(" | ")
        );
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("15") > version_key("9.6"));
        assert_eq!(version_key("main"), None);
    }
}
