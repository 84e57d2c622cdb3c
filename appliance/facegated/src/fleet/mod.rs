// SPDX-License-Identifier: MIT OR Apache-2.0
//! `[fleet]` in facegate.toml, and the gate's side of the fleet (docs/FLEET.md): the journal's
//! passages published to the back office's JetStream stream, each kept until the ledger
//! confirms it; the gate's status, as a heartbeat; and, with `gallery_keys`, the office's
//! gallery followed under its lease. The wire itself is facegate-fleet's.

pub mod gallery;
mod heartbeat;
mod lease;
mod publisher;

use std::path::PathBuf;

use async_nats::ServerAddr;
pub use facegate_fleet::GateId;
use facegate_fleet::gallery::TrustedKeys;
pub use gallery::follow_gallery;
pub use lease::GalleryLease;
pub use publisher::publish_journal;
use serde::{Deserialize, Serialize};

use crate::journal::Retention;

/// `[fleet]` in facegate.toml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Publish the journal to the back office. Off, the gate is an island, and retention goes by
    /// age alone.
    pub enabled: bool,
    /// This gate's name in the fleet: its subject and its key. Required when enabled.
    pub gate_id: Option<GateId>,
    /// The brokers, `nats://host:port` or `tls://host:port`; the client moves between them.
    pub servers: Vec<String>,
    /// The gate's own NATS user (each gate has one, allowed to publish only its passages).
    pub user: Option<String>,
    /// The file holding that user's password (readable by the service alone, unlike this file).
    pub password_file: Option<PathBuf>,
    /// The CA certificate the brokers' certificates are checked against; set, TLS is required.
    pub tls_ca_file: Option<PathBuf>,
    /// Passages published before waiting for the broker's acknowledgements.
    pub window: u32,
    /// The broker acknowledges before it fsyncs, so a crash of it can lose acknowledged
    /// passages: when passages wait and the ledger has confirmed nothing new for this long, the
    /// gate publishes again from the last confirmed one (the interval doubles, up to an hour,
    /// while nothing moves).
    pub resend_after_s: u32,
    /// The enrolment office's public keys (a directory of SPKI PEM files). Set, the gate's
    /// gallery is the fleet's: it follows the office's signed changes, and matches only under
    /// the office's lease. Unset, the gallery is the gate's own.
    pub gallery_keys: Option<PathBuf>,
    /// Seconds between the gate's heartbeats (its status, put in the fleet's status bucket):
    /// the back office counts a gate down after three missed.
    pub heartbeat_s: u32,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            enabled: false,
            gate_id: None,
            servers: vec!["nats://127.0.0.1:4222".into()],
            user: None,
            password_file: None,
            tls_ca_file: None,
            window: 64,
            resend_after_s: 60,
            gallery_keys: None,
            heartbeat_s: 10,
        }
    }
}

impl FleetConfig {
    /// Checks every value; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.gate_id.is_none() {
            return Err("fleet.gate_id: must be set when fleet.enabled is true".into());
        }
        if self.enabled && self.servers.is_empty() {
            return Err("fleet.servers: must name at least one broker".into());
        }
        if let Some(bad) = self.servers.iter().find(|server| {
            !(server.starts_with("nats://") || server.starts_with("tls://"))
                || server.parse::<async_nats::ServerAddr>().is_err()
        }) {
            return Err(format!(
                "fleet.servers: {bad:?} is not a nats://host:port or tls://host:port address"
            ));
        }
        if self.password_file.is_some() && self.user.is_none() {
            return Err("fleet.password_file: needs fleet.user".into());
        }
        if !(1..=1024).contains(&self.window) {
            return Err("fleet.window: must be 1 to 1024 passages".into());
        }
        if !(1..=3600).contains(&self.resend_after_s) {
            return Err("fleet.resend_after_s: must be 1 to 3600".into());
        }
        if !(1..=3600).contains(&self.heartbeat_s) {
            return Err("fleet.heartbeat_s: must be 1 to 3600".into());
        }
        Ok(())
    }

    /// Whether the gate follows the office's gallery (and needs its lease to match).
    pub fn follows_gallery(&self) -> bool {
        self.enabled && self.gallery_keys.is_some()
    }

    /// The lease the decider asks before matching.
    pub fn lease(&self) -> GalleryLease {
        match self.follows_gallery() {
            true => GalleryLease::required(),
            false => GalleryLease::island(),
        }
    }

    /// The office's keys, when the gate follows its gallery: a directory without one is an
    /// error, since the gate could then never apply a change nor match under a lease.
    pub fn trusted_office_keys(&self) -> Result<Option<TrustedKeys>, String> {
        let Some(dir) = self.gallery_keys.as_ref().filter(|_| self.enabled) else {
            return Ok(None);
        };
        let keys = TrustedKeys::load(dir).map_err(|e| format!("fleet.gallery_keys: {e}"))?;
        if keys.ids().next().is_none() {
            return Err(format!(
                "fleet.gallery_keys: {} holds no public key (*.pem)",
                dir.display()
            ));
        }
        Ok(Some(keys))
    }

    /// How the journal may be pruned: with a fleet, never past what the ledger holds.
    pub fn retention(&self) -> Retention {
        match self.enabled {
            true => Retention::AgeOnceConfirmed,
            false => Retention::Age,
        }
    }
}

/// Connects to the fleet's brokers as this gate's user. The gate starts whether or not the
/// office is reachable: the client keeps trying, and reconnects by itself.
pub(crate) async fn connect(
    config: &FleetConfig,
    gate: &GateId,
) -> Result<async_nats::Client, String> {
    let servers: Vec<ServerAddr> = config
        .servers
        .iter()
        .map(|server| {
            server
                .parse()
                .map_err(|e| format!("fleet.servers {server:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("facegated {gate}"))
        .retry_on_initial_connect()
        .max_reconnects(None);
    if let Some(user) = &config.user {
        let password = match &config.password_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| format!("fleet.password_file {}: {e}", file.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => String::new(),
        };
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .connect(servers)
        .await
        .map_err(|e| format!("connecting to {}: {e}", config.servers.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> FleetConfig {
        FleetConfig {
            enabled: true,
            gate_id: Some("north-3".parse().unwrap()),
            ..FleetConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_an_island() {
        let config = FleetConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.retention(), Retention::Age);
        assert_eq!(enabled().validate(), Ok(()));
        assert_eq!(enabled().retention(), Retention::AgeOnceConfirmed);
    }

    #[test]
    fn each_wrong_value_is_named() {
        let cases: [(FleetConfig, &str); 6] = [
            (
                FleetConfig {
                    gate_id: None,
                    ..enabled()
                },
                "fleet.gate_id",
            ),
            (
                FleetConfig {
                    servers: vec!["http://office:4222".into()],
                    ..enabled()
                },
                "fleet.servers",
            ),
            (
                FleetConfig {
                    password_file: Some("/etc/facegate/nats.password".into()),
                    ..enabled()
                },
                "fleet.password_file",
            ),
            (
                FleetConfig {
                    window: 0,
                    ..enabled()
                },
                "fleet.window",
            ),
            (
                FleetConfig {
                    resend_after_s: 0,
                    ..enabled()
                },
                "fleet.resend_after_s",
            ),
            (
                FleetConfig {
                    heartbeat_s: 0,
                    ..enabled()
                },
                "fleet.heartbeat_s",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(key), "{error}");
        }
    }

    #[test]
    fn a_gate_id_that_is_not_a_subject_token_is_refused_when_read() {
        let error = toml::from_str::<FleetConfig>("gate_id = \"north.3\"").unwrap_err();
        assert!(error.to_string().contains("north.3"), "{error}");
    }
}
