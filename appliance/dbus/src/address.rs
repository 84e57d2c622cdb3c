// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which bus the gate is on, connecting to it, and what a client may fail with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{BUS_NAME, GateProxy, Stats};

/// Which bus the gate is on: `[dbus] bus` in facegate.toml, `facegatectl status --bus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus (a real gate).
    #[default]
    System,
    /// The user's session bus.
    Session,
    /// A bus at a D-Bus address such as `unix:path=/run/facegate-test/bus` (tests, demos).
    Address(String),
}

impl BusAddress {
    /// A connection builder for this bus.
    pub fn builder(&self) -> zbus::connection::Builder<'static> {
        match self {
            BusAddress::System => zbus::connection::Builder::system(),
            BusAddress::Session => zbus::connection::Builder::session(),
            BusAddress::Address(address) => zbus::connection::Builder::address(address.as_str()),
        }
    }
}

/// "system bus", "session bus" or "D-Bus bus at ADDRESS", for messages.
impl fmt::Display for BusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddress::System => f.write_str("system bus"),
            BusAddress::Session => f.write_str("session bus"),
            BusAddress::Address(address) => write!(f, "D-Bus bus at {address}"),
        }
    }
}

/// A bus address that is neither "system", "session" nor a D-Bus address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bus {given:?} is not \"system\", \"session\" or a D-Bus address (unix:path=…): {reason}")]
pub struct BadBusAddress {
    pub given: String,
    pub reason: String,
}

impl FromStr for BusAddress {
    type Err = BadBusAddress;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(BusAddress::System),
            "session" => Ok(BusAddress::Session),
            address => zbus::Address::from_str(address)
                .map(|_| BusAddress::Address(address.to_string()))
                .map_err(|e| BadBusAddress {
                    given: address.to_string(),
                    reason: e.to_string(),
                }),
        }
    }
}

impl<'de> Deserialize<'de> for BusAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The configuration's spelling: "system", "session" or the address itself.
impl Serialize for BusAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            BusAddress::System => "system",
            BusAddress::Session => "session",
            BusAddress::Address(address) => address,
        })
    }
}

/// Errors of a bus client (and of the service's own connection).
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("cannot connect to the {bus}: {source}")]
    Connect {
        bus: BusAddress,
        source: zbus::Error,
    },
    #[error("the name {BUS_NAME} is already owned on the {bus} (is another facegated running?)")]
    NameTaken { bus: BusAddress },
    #[error("facegated is not running on the {bus} ({BUS_NAME} has no owner)")]
    NotRunning { bus: BusAddress },
    #[error("{what} on the {bus}: {source}")]
    Bus {
        bus: BusAddress,
        what: String,
        source: zbus::Error,
    },
}

/// Connects to `bus` without serving anything.
pub async fn connect(bus: &BusAddress) -> Result<zbus::Connection, DbusError> {
    bus.builder()
        .build()
        .await
        .map_err(|source| DbusError::Connect {
            bus: bus.clone(),
            source,
        })
}

/// Reads the gate's status from `bus` in one `Stats()` call.
pub async fn read_stats(bus: &BusAddress) -> Result<Stats, DbusError> {
    let connection = connect(bus).await?;
    let proxy = GateProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|source| DbusError::Bus {
            bus: bus.clone(),
            what: format!("cannot reach {BUS_NAME}"),
            source,
        })?;
    proxy.stats().await.map_err(|source| {
        if is_not_running(&source) {
            DbusError::NotRunning { bus: bus.clone() }
        } else {
            DbusError::Bus {
                bus: bus.clone(),
                what: format!("{BUS_NAME} Stats() failed"),
                source,
            }
        }
    })
}

fn is_not_running(e: &zbus::Error) -> bool {
    const NAMES: [&str; 2] = [
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    ];
    match e {
        zbus::Error::MethodError(name, _, _) => NAMES.contains(&name.as_str()),
        zbus::Error::FDO(e) => matches!(
            **e,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_addresses() {
        assert_eq!("system".parse(), Ok(BusAddress::System));
        assert_eq!("session".parse(), Ok(BusAddress::Session));
        assert_eq!(
            "unix:path=/run/x".parse(),
            Ok(BusAddress::Address("unix:path=/run/x".into()))
        );
        let e = "sistem".parse::<BusAddress>().unwrap_err();
        assert!(e.to_string().contains("\"sistem\""), "{e}");
        assert_eq!(BusAddress::System.to_string(), "system bus");
        assert_eq!(
            BusAddress::Address("unix:path=/x".into()).to_string(),
            "D-Bus bus at unix:path=/x"
        );
    }
}
