// SPDX-License-Identifier: MIT OR Apache-2.0
//! A private dbus-daemon for the demo and the tests: the gate's real D-Bus code on a real bus,
//! without touching the system bus.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// Any user may connect and talk: whether a caller may act is decided by facegated itself (its
/// uid check), which is what must be exercised. The system bus adds the policy file in systemd/.
const CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#;

pub struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    pub fn start() -> anyhow::Result<PrivateBus> {
        let dir = tempfile::Builder::new().prefix("facegate-bus").tempdir()?;
        // Other users (the unprivileged caller in the tests) must reach the socket.
        set_mode(dir.path(), 0o755)?;
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, CONFIG.replace("SOCKET", &socket.to_string_lossy()))?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            // As root in a container it only warns that it cannot raise its fd limit.
            .stderr(Stdio::null())
            .spawn()
            .context(
                "dbus-daemon could not start (Debian package dbus-daemon; run `make setup`)",
            )?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("dbus-daemon has no stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line.trim().to_owned();
        if address.is_empty() {
            let _ = child.kill();
            bail!("dbus-daemon printed no address");
        }
        Ok(PrivateBus {
            child,
            address,
            _dir: dir,
        })
    }

    /// The bus, for facegate-dbus's clients and the service's `[dbus] bus`.
    pub fn bus_address(&self) -> facegate_dbus::BusAddress {
        facegate_dbus::BusAddress::Address(self.address.clone())
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
