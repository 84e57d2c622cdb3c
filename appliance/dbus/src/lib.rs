// SPDX-License-Identifier: MIT OR Apache-2.0
//! `org.facegate.Gate1`, the gate service's D-Bus interface, as both sides of the bus see it:
//! the names, the typed values of every property, method argument and signal, the `Stats()`
//! dictionary and the client proxy. facegated serves it; facegatectl and monitoring tools read it.
//!
//! Well-known name `org.facegate.Gate`, object `/org/facegate/Gate`. The wire format is plain
//! D-Bus (`busctl`, `gdbus` and `dbus-send` need nothing from this crate): enums travel as their
//! kebab-case names (`s`), [`Stats`] and [`LastDecision`] as `a{sv}` dictionaries with snake_case
//! keys. `appliance/dbus/org.facegate.Gate1.xml` is the interface's introspection data.

mod address;
mod object;
mod values;

pub use address::{BadBusAddress, BusAddress, DbusError, connect, read_stats};
pub use object::{ControlError, Gate, GateBus, GateControl, GateProxy, GateSignals, serve};
pub use values::{
    DenyReason, LastDecision, Mode, OPEN_REASON_MAX_CHARS, PassageOutcome, State, Stats, Verdict,
    check_open_reason, one_of, parse_name,
};

/// The well-known bus name the gate service owns.
pub const BUS_NAME: &str = "org.facegate.Gate";
/// The object path of the gate.
pub const OBJECT_PATH: &str = "/org/facegate/Gate";
/// The interface name.
pub const INTERFACE: &str = "org.facegate.Gate1";
