// SPDX-License-Identifier: MIT OR Apache-2.0
//! The broker's users, as nats-server's `authorization` block: the back office's (the ledger and
//! the enrolment office), which may do anything, and one per gate, which may publish only its own
//! passages and its own status (its heartbeat), and make the JetStream API calls that reading
//! the confirmations, the lease, the gallery's changes and its snapshot take. A gate can neither
//! write the gallery nor the lease, nor another gate's passages or status.
//!
//! One source for the shipped broker (`facegate-backoffice broker-users`) and the tests.

use std::fmt::Write as _;

use facegate_fleet::gallery::{GALLERY_STREAM, LEASE_BUCKET, SNAPSHOT_BUCKET};
use facegate_fleet::health::STATUS_BUCKET;
use facegate_fleet::{CONFIRMED_BUCKET, GateId};

/// Who a broker user is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The ledger and the office: every subject.
    BackOffice,
    Gate(GateId),
}

#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUser {
    pub name: String,
    pub password: String,
    pub role: Role,
}

impl std::fmt::Debug for BrokerUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What a gate's user may publish.
pub fn gate_may_publish(gate: &GateId) -> Vec<String> {
    let streams = [
        format!("KV_{CONFIRMED_BUCKET}"),
        format!("KV_{LEASE_BUCKET}"),
        GALLERY_STREAM.to_owned(),
        format!("OBJ_{SNAPSHOT_BUCKET}"),
    ];
    let mut allowed = vec![
        gate.passages_subject(),
        gate.status_subject(),
        format!("$JS.API.STREAM.INFO.KV_{STATUS_BUCKET}"),
        "$JS.API.INFO".to_owned(),
    ];
    for stream in &streams {
        allowed.extend([
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
        ]);
    }
    allowed
}

/// A gate's user may subscribe only to its own replies.
pub const GATE_MAY_SUBSCRIBE: &str = "_INBOX.>";

/// nats-server's `authorization { users = [...] }` for `users` (strings quoted as JSON, which
/// nats-server's configuration reads).
pub fn authorization(users: &[BrokerUser]) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("strings serialise");
    let mut block = String::from("authorization {\n  users = [\n");
    for user in users {
        let _ = write!(
            block,
            "    {{user: {}, password: {}",
            quote(&user.name),
            quote(&user.password)
        );
        if let Role::Gate(gate) = &user.role {
            let publish: Vec<String> = gate_may_publish(gate).iter().map(|s| quote(s)).collect();
            let _ = write!(
                block,
                ", permissions: {{publish: {{allow: [{}]}}, subscribe: {{allow: [{}]}}}}",
                publish.join(", "),
                quote(GATE_MAY_SUBSCRIBE)
            );
        }
        block.push_str("}\n");
    }
    block.push_str("  ]\n}\n");
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_publishes_only_its_own_passages_and_status_and_never_the_gallery() {
        let gate: GateId = "north-3".parse().unwrap();
        let allowed = gate_may_publish(&gate);
        assert!(allowed.contains(&"facegate.passages.north-3".to_owned()));
        assert!(
            !allowed
                .iter()
                .any(|s| s.starts_with("facegate.passages.") && !s.ends_with("north-3"))
        );
        assert!(!allowed.iter().any(|s| s.starts_with("facegate.gallery")));
        // Of the buckets, it writes its own status alone.
        let writes: Vec<&String> = allowed
            .iter()
            .filter(|s| s.contains("$KV.") || s.contains("$O."))
            .collect();
        assert_eq!(writes, ["$KV.facegate_status.north-3"]);
        assert!(!allowed.iter().any(|s| s.contains('*') || s == ">"));
    }

    #[test]
    fn the_block_quotes_what_it_is_given() {
        let block = authorization(&[
            BrokerUser {
                name: "office".into(),
                password: "a \"quoted\" secret".into(),
                role: Role::BackOffice,
            },
            BrokerUser {
                name: "gate-1".into(),
                password: "s1".into(),
                role: Role::Gate("gate-1".parse().unwrap()),
            },
        ]);
        assert!(
            block.contains(r#"{user: "office", password: "a \"quoted\" secret"}"#),
            "{block}"
        );
        assert!(
            block.contains(r#"subscribe: {allow: ["_INBOX.>"]}"#),
            "{block}"
        );
        assert!(
            !format!(
                "{:?}",
                BrokerUser {
                    name: "x".into(),
                    password: "hidden".into(),
                    role: Role::BackOffice
                }
            )
            .contains("hidden")
        );
    }
}
