//! The client side of `org.facegate.Gate1`, used by `facegatectl status`.

use std::collections::HashMap;

use zbus::OwnedVariant;

use crate::dbus::{BUS_NAME, DbusError, Status, connect, describe_bus};

/// Client proxy of the gate's interface (`GateProxy`).
#[zbus::proxy(
    interface = "org.facegate.Gate1",
    default_service = "org.facegate.Gate",
    default_path = "/org/facegate/Gate"
)]
pub trait Gate {
    /// Opens the gate for a staff passage; privileged.
    fn open(&self, reason: &str) -> zbus::Result<String>;

    /// Sets the mode: "normal", "locked" or "free"; privileged.
    fn set_mode(&self, mode: &str) -> zbus::Result<()>;

    /// Reloads the gallery; privileged. Returns the generation.
    fn reload_gallery(&self) -> zbus::Result<u64>;

    /// Every property (snake_case keys) plus uptime_s, restarts and stream_start_unix_ns.
    fn stats(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;

    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn mode(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gallery_generation(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn gallery_size(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn passages_today(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn denied_today(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn fps(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn last_decision(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn passage_granted(&self, passage_id: &str, id: &str, similarity: f64) -> zbus::Result<()>;
    #[zbus(signal)]
    fn passage_denied(&self, reason: &str) -> zbus::Result<()>;
}

/// Reads the gate's status from `bus` ("system", "session" or an address) in one `Stats()` call.
pub async fn read_status(bus: &str) -> Result<Status, DbusError> {
    let connection = connect(bus).await?;
    let proxy = GateProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|source| DbusError::Bus {
            bus: describe_bus(bus),
            what: format!("cannot reach {BUS_NAME}"),
            source,
        })?;
    let stats = proxy.stats().await.map_err(|source| {
        if is_not_running(&source) {
            DbusError::NotRunning {
                bus: describe_bus(bus),
                name: BUS_NAME.into(),
            }
        } else {
            DbusError::Bus {
                bus: describe_bus(bus),
                what: format!("{BUS_NAME} Stats() failed"),
                source,
            }
        }
    })?;
    Status::from_stats(&stats).map_err(|message| DbusError::BadReply {
        bus: describe_bus(bus),
        name: BUS_NAME.into(),
        message,
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

/// A few aligned lines for people, e.g.
///
/// ```text
/// state:         running
/// mode:          normal
/// gallery:       1234 people (generation 7)
/// today:         56 passages, 3 denied
/// fps:           14.5
/// uptime:        1d 02:03:04 (2 pipeline restarts)
/// last decision: {"decision":"grant",...}
/// version:       0.1.0
/// ```
pub fn format_status(status: &Status) -> String {
    let last = if status.last_decision.is_empty() {
        "none yet"
    } else {
        status.last_decision.as_str()
    };
    let restarts = match status.restarts {
        1 => "1 pipeline restart".to_string(),
        n => format!("{n} pipeline restarts"),
    };
    let rows = [
        ("state", status.state.clone()),
        ("mode", status.mode.clone()),
        (
            "gallery",
            format!(
                "{} {} (generation {})",
                status.gallery_size,
                if status.gallery_size == 1 {
                    "person"
                } else {
                    "people"
                },
                status.gallery_generation
            ),
        ),
        (
            "today",
            format!(
                "{} passages, {} denied",
                status.passages_today, status.denied_today
            ),
        ),
        ("fps", format!("{:.1}", status.fps)),
        (
            "uptime",
            format!("{} ({restarts})", format_duration(status.uptime_s)),
        ),
        ("last decision", last.to_string()),
        ("version", status.version.clone()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{:<width$}{v}\n", format!("{k}:")));
    }
    out
}

fn format_duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_aligned_lines() {
        let s = Status {
            state: "running".into(),
            mode: "normal".into(),
            gallery_generation: 7,
            gallery_size: 1234,
            passages_today: 56,
            denied_today: 3,
            fps: 14.46,
            last_decision: r#"{"decision":"grant"}"#.into(),
            uptime_s: 93_784,
            restarts: 2,
            stream_start_unix_ns: 0,
            version: "0.1.0".into(),
        };
        let text = format_status(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[0], "state:         running");
        assert_eq!(lines[2], "gallery:       1234 people (generation 7)");
        assert_eq!(lines[3], "today:         56 passages, 3 denied");
        assert_eq!(lines[4], "fps:           14.5");
        assert_eq!(lines[5], "uptime:        1d 02:03:04 (2 pipeline restarts)");
        assert_eq!(lines[6], r#"last decision: {"decision":"grant"}"#);
        assert_eq!(lines[7], "version:       0.1.0");
        // Values start in the same column.
        for l in &lines {
            assert_eq!(&l[14..15], " ", "{l}");
            assert_ne!(&l[15..16], " ", "{l}");
        }
        let d = format_status(&Status::default());
        assert!(d.contains("last decision: none yet"), "{d}");
        assert!(
            d.contains("uptime:        00:00:00 (0 pipeline restarts)"),
            "{d}"
        );
    }
}
