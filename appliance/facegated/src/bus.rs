// SPDX-License-Identifier: MIT OR Apache-2.0
//! `[dbus]` in facegate.toml, and who may act on the gate over D-Bus. The interface itself
//! (`org.facegate.Gate1`) is facegate-dbus's.

use facegate_dbus::BusAddress;
use serde::{Deserialize, Serialize};

/// `[dbus]` in facegate.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// "system" | "session" | a D-Bus address ("unix:path=/run/x").
    pub bus: BusAddress,
    /// Besides uid 0, members of this group may call Open, SetMode and ReloadGallery.
    pub privileged_group: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            bus: BusAddress::System,
            privileged_group: "facegate-staff".into(),
        }
    }
}

/// Who may act on the gate: uid 0 and the members of `group`; a refusal names them.
pub fn authorize(uid: u32, group: &str) -> Result<(), String> {
    if uid_is_privileged(uid, group) {
        Ok(())
    } else {
        Err(format!("root and members of group {group}"))
    }
}

/// uid 0, or a user whose primary group is `group` or who is listed as its member.
/// A group that does not exist means only root; so does a uid without a passwd entry.
pub fn uid_is_privileged(uid: u32, group: &str) -> bool {
    use nix::unistd::{Group, Uid, User};
    if uid == 0 {
        return true;
    }
    let Ok(Some(group)) = Group::from_name(group) else {
        return false;
    };
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    user.gid == group.gid || group.mem.contains(&user.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_parse() {
        let d = BusConfig::default();
        assert_eq!(d.bus, BusAddress::System);
        assert_eq!(d.privileged_group, "facegate-staff");
        let c: BusConfig = serde_json::from_str(r#"{"bus": "unix:path=/run/x"}"#).unwrap();
        assert_eq!(c.bus, BusAddress::Address("unix:path=/run/x".into()));
        assert_eq!(c.privileged_group, "facegate-staff");
        assert!(serde_json::from_str::<BusConfig>(r#"{"buss": "x"}"#).is_err());
        let e = serde_json::from_str::<BusConfig>(r#"{"bus": "sistem"}"#).unwrap_err();
        assert!(e.to_string().contains("sistem"), "{e}");
    }

    #[test]
    fn privilege_rules() {
        assert!(uid_is_privileged(0, "no-such-group-facegate"));
        assert!(!uid_is_privileged(65534, "no-such-group-facegate"));
        // An unknown uid is never privileged, whatever the group.
        assert!(!uid_is_privileged(4_000_000_000, "root"));
        // A user whose primary group is the privileged one.
        if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(65534))
            && let Ok(Some(_)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534))
        {
            assert!(uid_is_privileged(65534, &g.name));
        }
    }
}
