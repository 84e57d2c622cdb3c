//! `org.facegate.Gate1` on a configurable bus: the service side of the gate's D-Bus interface.
//!
//! Well-known name `org.facegate.Gate`, object `/org/facegate/Gate`. Properties are read-only and
//! announced with `PropertiesChanged`; the methods that act on the gate (`Open`, `SetMode`,
//! `ReloadGallery`) are for privileged callers only: root or a member of `[dbus] privileged_group`,
//! checked on the caller's uid as the bus daemon reports it (the system-bus policy file in
//! `systemd/org.facegate.Gate.conf` is the first line of defence, this check the second).
//! The gate logic itself lives behind [`GateControl`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Deserialize;
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, fdo, interface};
use zbus::{OwnedVariant, Variant};

use crate::policy::Mode;

/// The well-known bus name the gate service owns.
pub const BUS_NAME: &str = "org.facegate.Gate";
/// The object path of the gate.
pub const OBJECT_PATH: &str = "/org/facegate/Gate";
/// The interface name.
pub const INTERFACE: &str = "org.facegate.Gate1";

/// The gate's operations the bus may trigger; implemented by the service.
///
/// Methods are called on a blocking thread (they may write the journal or move the gate).
pub trait GateControl: Send + Sync + 'static {
    /// A staff opening: recorded like a passage; returns the passage id.
    fn open(&self, reason: &str) -> Result<String, ControlError>;
    /// Switches the mode (the D-Bus layer has already parsed the caller's word).
    fn set_mode(&self, mode: Mode) -> Result<(), ControlError>;
    /// Reloads the gallery; returns its generation.
    fn reload_gallery(&self) -> Result<u64, ControlError>;
}

/// What a [`GateControl`] operation may fail with; mapped to D-Bus errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The caller's argument is wrong (an unknown mode, an empty reason…):
    /// `org.freedesktop.DBus.Error.InvalidArgs`.
    #[error("{0}")]
    InvalidArgs(String),
    /// Anything else: `org.freedesktop.DBus.Error.Failed`.
    #[error("{0}")]
    Failed(String),
}

impl From<ControlError> for fdo::Error {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::InvalidArgs(m) => fdo::Error::InvalidArgs(m),
            ControlError::Failed(m) => fdo::Error::Failed(m),
        }
    }
}

/// The service's state as published on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// "starting" | "running" | "degraded" | "stopped"
    pub state: String,
    /// "normal" | "locked" | "free"
    pub mode: String,
    pub gallery_generation: u64,
    pub gallery_size: u64,
    pub passages_today: u64,
    pub denied_today: u64,
    /// Frames per second the pipeline currently delivers.
    pub fps: f64,
    /// One-line JSON of the last decision, "" before any.
    pub last_decision: String,
    /// Seconds since the service started (as of the [`GateBus::update`] that set it).
    pub uptime_s: u64,
    /// Pipeline restarts since the service started.
    pub restarts: u64,
    /// Wall-clock time (ns since the Unix epoch) at which the running pipeline's stream time was
    /// zero, 0 before frames flow: puts decisions' video times on the clock, for latency checks.
    pub stream_start_unix_ns: u64,
    /// The service's version. The service always publishes its own `CARGO_PKG_VERSION` (the
    /// constant `Version` property), whatever [`GateBus::update`] is given; [`Status::from_stats`]
    /// fills it from the service's answer.
    pub version: String,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: "starting".into(),
            mode: "normal".into(),
            gallery_generation: 0,
            gallery_size: 0,
            passages_today: 0,
            denied_today: 0,
            fps: 0.0,
            last_decision: String::new(),
            uptime_s: 0,
            restarts: 0,
            stream_start_unix_ns: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl Status {
    /// The `Stats()` dictionary: every property (snake_case keys) plus `uptime_s`, `restarts` and
    /// `stream_start_unix_ns`.
    pub fn to_stats(&self) -> HashMap<String, OwnedVariant> {
        let mut m = HashMap::new();
        let mut put = |k: &str, v: Variant<'_>| {
            // Plain values (no file descriptors) always convert.
            if let Ok(v) = v.try_into_owned() {
                m.insert(k.to_string(), v);
            }
        };
        put("state", Variant::from(self.state.as_str()));
        put("mode", Variant::from(self.mode.as_str()));
        put("gallery_generation", Variant::from(self.gallery_generation));
        put("gallery_size", Variant::from(self.gallery_size));
        put("passages_today", Variant::from(self.passages_today));
        put("denied_today", Variant::from(self.denied_today));
        put("fps", Variant::from(self.fps));
        put("last_decision", Variant::from(self.last_decision.as_str()));
        put("version", Variant::from(self.version.as_str()));
        put("uptime_s", Variant::from(self.uptime_s));
        put("restarts", Variant::from(self.restarts));
        put(
            "stream_start_unix_ns",
            Variant::from(self.stream_start_unix_ns),
        );
        m
    }

    /// Reads a `Stats()` dictionary back; missing keys keep their defaults, a key of the wrong
    /// type is an error naming it.
    pub fn from_stats(stats: &HashMap<String, OwnedVariant>) -> Result<Status, String> {
        fn get<T>(
            stats: &HashMap<String, OwnedVariant>,
            key: &str,
            into: &mut T,
        ) -> Result<(), String>
        where
            T: TryFrom<OwnedVariant>,
        {
            if let Some(v) = stats.get(key) {
                let v = v.try_clone().map_err(|e| format!("Stats key {key}: {e}"))?;
                let sig = v.value_signature().to_string();
                *into = T::try_from(v).map_err(|_| format!("Stats key {key} has type {sig}"))?;
            }
            Ok(())
        }
        let mut s = Status::default();
        get(stats, "state", &mut s.state)?;
        get(stats, "mode", &mut s.mode)?;
        get(stats, "gallery_generation", &mut s.gallery_generation)?;
        get(stats, "gallery_size", &mut s.gallery_size)?;
        get(stats, "passages_today", &mut s.passages_today)?;
        get(stats, "denied_today", &mut s.denied_today)?;
        get(stats, "fps", &mut s.fps)?;
        get(stats, "last_decision", &mut s.last_decision)?;
        get(stats, "uptime_s", &mut s.uptime_s)?;
        get(stats, "restarts", &mut s.restarts)?;
        get(stats, "version", &mut s.version)?;
        get(stats, "stream_start_unix_ns", &mut s.stream_start_unix_ns)?;
        Ok(s)
    }
}

/// `[dbus]` in facegate.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// "system" | "session" | a D-Bus address ("unix:path=/run/x").
    pub bus: String,
    /// Besides uid 0, members of this group may call Open, SetMode and ReloadGallery.
    pub privileged_group: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            bus: "system".into(),
            privileged_group: "facegate-staff".into(),
        }
    }
}

/// Errors of the bus side (service and client).
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("cannot connect to the {bus}: {source}")]
    Connect { bus: String, source: zbus::Error },
    #[error("the name {name} is already owned on the {bus} (is another facegated running?)")]
    NameTaken { bus: String, name: String },
    #[error("facegated is not running on the {bus} ({name} has no owner)")]
    NotRunning { bus: String, name: String },
    #[error("{what} on the {bus}: {source}")]
    Bus {
        bus: String,
        what: String,
        source: zbus::Error,
    },
    #[error("unexpected answer from {name} on the {bus}: {message}")]
    BadReply {
        bus: String,
        name: String,
        message: String,
    },
}

/// "system bus", "session bus" or "D-Bus bus at ADDRESS", for messages.
pub fn describe_bus(bus: &str) -> String {
    match bus {
        "system" => "system bus".into(),
        "session" => "session bus".into(),
        addr => format!("D-Bus bus at {addr}"),
    }
}

/// Connects to "system", "session" or an address, without serving anything.
pub async fn connect(bus: &str) -> Result<Connection, DbusError> {
    builder(bus)
        .build()
        .await
        .map_err(|source| DbusError::Connect {
            bus: describe_bus(bus),
            source,
        })
}

fn builder(bus: &str) -> zbus::connection::Builder<'static> {
    match bus {
        "system" => zbus::connection::Builder::system(),
        "session" => zbus::connection::Builder::session(),
        addr => zbus::connection::Builder::address(addr),
    }
}

/// What the object publishes, shared by the object and [`GateBus`]. A plain mutex of its own
/// (held only to copy or swap values), so that publishing never waits for a method call in
/// progress: zbus keeps the object locked for reading while a method runs, and `Open` may take
/// as long as the gate does.
struct Published {
    status: Status,
    /// When `status` was last set, to keep `uptime_s` in `Stats()` current between updates.
    updated: Instant,
}

fn lock(published: &Mutex<Published>) -> MutexGuard<'_, Published> {
    published.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The exported object: the published status; the gate logic is behind `control`.
struct GateInterface {
    published: Arc<Mutex<Published>>,
    control: Arc<dyn GateControl>,
    privileged_group: String,
}

fn blocking_failed(e: tokio::task::JoinError) -> fdo::Error {
    fdo::Error::Failed(format!("gate control failed: {e}"))
}

impl GateInterface {
    fn published(&self) -> MutexGuard<'_, Published> {
        lock(&self.published)
    }

    /// Refuses the call unless the sender is root or in the privileged group.
    async fn authorize(
        &self,
        method: &str,
        header: &Header<'_>,
        connection: &Connection,
    ) -> fdo::Result<()> {
        let Some(sender) = header.sender() else {
            tracing::warn!(method, "refused a D-Bus call without a sender");
            return Err(fdo::Error::AccessDenied(format!(
                "{method}: the caller is unknown (no sender)"
            )));
        };
        let dbus = fdo::DBusProxy::new(connection).await?;
        let uid = dbus
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| {
                tracing::warn!(method, %sender, "cannot learn the caller's uid: {e}");
                fdo::Error::AccessDenied(format!("{method}: cannot learn the caller's uid: {e}"))
            })?;
        let group = self.privileged_group.clone();
        let allowed = tokio::task::spawn_blocking(move || uid_is_privileged(uid, &group))
            .await
            .map_err(blocking_failed)?;
        if allowed {
            tracing::info!(method, uid, %sender, "privileged D-Bus call allowed");
            Ok(())
        } else {
            tracing::warn!(
                method,
                uid,
                %sender,
                group = %self.privileged_group,
                "refused D-Bus call: caller is neither root nor in the privileged group"
            );
            Err(fdo::Error::AccessDenied(format!(
                "{method} is for root and members of group {} only; uid {uid} is neither",
                self.privileged_group
            )))
        }
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

#[interface(name = "org.facegate.Gate1")]
impl GateInterface {
    /// Opens the gate for a staff passage, recorded like a passage. Privileged.
    #[zbus(out_args("passage_id"))]
    async fn open(
        &self,
        reason: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<String> {
        self.authorize("Open", &header, connection).await?;
        let control = self.control.clone();
        Ok(tokio::task::spawn_blocking(move || control.open(&reason))
            .await
            .map_err(blocking_failed)??)
    }

    /// Sets the mode: "normal", "locked" or "free". Privileged.
    async fn set_mode(
        &self,
        mode: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<()> {
        self.authorize("SetMode", &header, connection).await?;
        let mode: Mode = mode.parse().map_err(fdo::Error::InvalidArgs)?;
        let control = self.control.clone();
        Ok(tokio::task::spawn_blocking(move || control.set_mode(mode))
            .await
            .map_err(blocking_failed)??)
    }

    /// Reloads the gallery from disk and returns its generation. Privileged.
    #[zbus(out_args("generation"))]
    async fn reload_gallery(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<u64> {
        self.authorize("ReloadGallery", &header, connection).await?;
        let control = self.control.clone();
        Ok(
            tokio::task::spawn_blocking(move || control.reload_gallery())
                .await
                .map_err(blocking_failed)??,
        )
    }

    /// Every property under a snake_case key (state, mode, gallery_generation, gallery_size,
    /// passages_today, denied_today, fps, last_decision, version) plus uptime_s (t) and
    /// restarts (t: pipeline restarts). For anyone.
    #[zbus(out_args("stats"))]
    async fn stats(&self) -> HashMap<String, OwnedVariant> {
        let mut status = {
            let published = self.published();
            let mut status = published.status.clone();
            status.uptime_s += published.updated.elapsed().as_secs();
            status
        };
        status.version = env!("CARGO_PKG_VERSION").into();
        status.to_stats()
    }

    /// "starting", "running", "degraded" or "stopped".
    #[zbus(property)]
    async fn state(&self) -> String {
        self.published().status.state.clone()
    }

    /// "normal", "locked" or "free".
    #[zbus(property)]
    async fn mode(&self) -> String {
        self.published().status.mode.clone()
    }

    /// Generation of the gallery being searched.
    #[zbus(property)]
    async fn gallery_generation(&self) -> u64 {
        self.published().status.gallery_generation
    }

    /// People in that gallery.
    #[zbus(property)]
    async fn gallery_size(&self) -> u64 {
        self.published().status.gallery_size
    }

    /// Passages granted today.
    #[zbus(property)]
    async fn passages_today(&self) -> u64 {
        self.published().status.passages_today
    }

    /// Refusals today.
    #[zbus(property)]
    async fn denied_today(&self) -> u64 {
        self.published().status.denied_today
    }

    /// Frames per second the pipeline delivers.
    #[zbus(property)]
    async fn fps(&self) -> f64 {
        self.published().status.fps
    }

    /// One-line JSON of the last decision; empty before any.
    #[zbus(property)]
    async fn last_decision(&self) -> String {
        self.published().status.last_decision.clone()
    }

    /// facegated's version.
    #[zbus(property(emits_changed_signal = "const"))]
    async fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// A person was let through.
    #[zbus(signal)]
    async fn passage_granted(
        emitter: &SignalEmitter<'_>,
        passage_id: &str,
        id: &str,
        similarity: f64,
    ) -> zbus::Result<()>;

    /// A person was refused: "unknown", "low-confidence", "several-faces", "passback", "disabled".
    #[zbus(signal)]
    async fn passage_denied(emitter: &SignalEmitter<'_>, reason: &str) -> zbus::Result<()>;
}

/// The served gate object: publish status and passages through it.
#[derive(Clone)]
pub struct GateBus {
    connection: Connection,
    emitter: SignalEmitter<'static>,
    published: Arc<Mutex<Published>>,
    /// Serialises [`GateBus::update`]s so their signals leave in the order the values were set.
    updating: Arc<tokio::sync::Mutex<()>>,
}

/// Connects to `config.bus`, exports the gate object and takes the name `org.facegate.Gate`.
pub async fn serve(
    config: &BusConfig,
    control: Arc<dyn GateControl>,
) -> Result<GateBus, DbusError> {
    let bus = describe_bus(&config.bus);
    let published = Arc::new(Mutex::new(Published {
        status: Status::default(),
        updated: Instant::now(),
    }));
    let iface = GateInterface {
        published: published.clone(),
        control,
        privileged_group: config.privileged_group.clone(),
    };
    // Export the object before taking the name, so no call to the name finds it missing.
    let connection = builder(&config.bus)
        .serve_at(OBJECT_PATH, iface)
        .build()
        .await
        .map_err(|source| DbusError::Connect {
            bus: bus.clone(),
            source,
        })?;
    let reply = connection
        .request_name_with_flags(BUS_NAME, fdo::RequestNameFlags::DO_NOT_QUEUE)
        .await;
    match reply {
        Ok(fdo::RequestNameReply::PrimaryOwner | fdo::RequestNameReply::AlreadyOwner) => {}
        Ok(fdo::RequestNameReply::Exists | fdo::RequestNameReply::InQueue)
        | Err(zbus::Error::NameTaken) => {
            return Err(DbusError::NameTaken {
                bus,
                name: BUS_NAME.into(),
            });
        }
        Err(source) => {
            return Err(DbusError::Bus {
                bus,
                what: format!("cannot own the name {BUS_NAME}"),
                source,
            });
        }
    }
    let emitter = SignalEmitter::new(&connection, OBJECT_PATH)
        .map_err(|source| DbusError::Bus {
            bus: bus.clone(),
            what: format!("bad object path {OBJECT_PATH}"),
            source,
        })?
        .into_owned();
    tracing::info!(name = BUS_NAME, %bus, "D-Bus service ready");
    Ok(GateBus {
        connection,
        emitter,
        published,
        updating: Arc::new(tokio::sync::Mutex::new(())),
    })
}

impl GateBus {
    /// The bus connection (to add objects, watch names, or close it).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Publishes `status`: sets the properties and emits one `PropertiesChanged` with only the
    /// properties whose value changed (none when nothing did). Bus failures are logged.
    pub async fn update(&self, status: Status) {
        let _order = self.updating.lock().await;
        let changed: Vec<(&'static str, Variant<'static>)> = {
            let mut published = lock(&self.published);
            let old = &published.status;
            let mut changed = Vec::new();
            if old.state != status.state {
                changed.push(("State", Variant::from(status.state.clone())));
            }
            if old.mode != status.mode {
                changed.push(("Mode", Variant::from(status.mode.clone())));
            }
            if old.gallery_generation != status.gallery_generation {
                changed.push((
                    "GalleryGeneration",
                    Variant::from(status.gallery_generation),
                ));
            }
            if old.gallery_size != status.gallery_size {
                changed.push(("GallerySize", Variant::from(status.gallery_size)));
            }
            if old.passages_today != status.passages_today {
                changed.push(("PassagesToday", Variant::from(status.passages_today)));
            }
            if old.denied_today != status.denied_today {
                changed.push(("DeniedToday", Variant::from(status.denied_today)));
            }
            if old.fps.to_bits() != status.fps.to_bits() {
                changed.push(("Fps", Variant::from(status.fps)));
            }
            if old.last_decision != status.last_decision {
                changed.push(("LastDecision", Variant::from(status.last_decision.clone())));
            }
            published.status = status;
            published.updated = Instant::now();
            changed
        };
        if changed.is_empty() {
            return;
        }
        let names: Vec<&str> = changed.iter().map(|(n, _)| *n).collect();
        let map: HashMap<&str, Variant<'_>> = changed.into_iter().collect();
        let emitted = fdo::Properties::properties_changed(
            &self.emitter,
            InterfaceName::from_static_str_unchecked(INTERFACE),
            map,
            Cow::Borrowed(&[]),
        )
        .await;
        if let Err(e) = emitted {
            tracing::warn!(?names, "cannot emit PropertiesChanged: {e}");
        }
    }

    /// Emits `PassageGranted(passage_id, id, similarity)`. Bus failures are logged.
    pub async fn passage_granted(&self, passage_id: &str, id: &str, similarity: f64) {
        let r = GateInterface::passage_granted(&self.emitter, passage_id, id, similarity).await;
        if let Err(e) = r {
            tracing::warn!(passage_id, id, "cannot emit PassageGranted: {e}");
        }
    }

    /// Emits `PassageDenied(reason)`. Bus failures are logged.
    pub async fn passage_denied(&self, reason: &str) {
        let r = GateInterface::passage_denied(&self.emitter, reason).await;
        if let Err(e) = r {
            tracing::warn!(reason, "cannot emit PassageDenied: {e}");
        }
    }

    /// The status last published with [`GateBus::update`].
    pub fn status(&self) -> Status {
        lock(&self.published).status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_parse() {
        let d = BusConfig::default();
        assert_eq!(d.bus, "system");
        assert_eq!(d.privileged_group, "facegate-staff");
        let c: BusConfig = serde_json::from_str(r#"{"bus": "unix:path=/run/x"}"#).unwrap();
        assert_eq!(c.bus, "unix:path=/run/x");
        assert_eq!(c.privileged_group, "facegate-staff");
        assert!(serde_json::from_str::<BusConfig>(r#"{"buss": "x"}"#).is_err());
    }

    #[test]
    fn stats_round_trip() {
        let s = Status {
            state: "running".into(),
            mode: "free".into(),
            gallery_generation: 7,
            gallery_size: 1234,
            passages_today: 56,
            denied_today: 3,
            fps: 14.5,
            last_decision: r#"{"decision":"grant"}"#.into(),
            uptime_s: 3600,
            restarts: 2,
            stream_start_unix_ns: 1_700_000_000_000_000_000,
            version: "1.2.3".into(),
        };
        let m = s.to_stats();
        assert_eq!(m.len(), 12);
        assert_eq!(
            String::try_from(m["version"].try_clone().unwrap()).unwrap(),
            "1.2.3"
        );
        assert_eq!(Status::from_stats(&m).unwrap(), s);
        let mut bad = m;
        bad.insert("fps".into(), OwnedVariant::from(3u32));
        let e = Status::from_stats(&bad).unwrap_err();
        assert!(e.contains("fps"), "{e}");
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

    #[test]
    fn control_errors_map_to_dbus_errors() {
        let e: fdo::Error = ControlError::InvalidArgs("bad".into()).into();
        assert!(matches!(e, fdo::Error::InvalidArgs(ref m) if m == "bad"));
        let e: fdo::Error = ControlError::Failed("oops".into()).into();
        assert!(matches!(e, fdo::Error::Failed(ref m) if m == "oops"));
    }

    #[test]
    fn bus_descriptions() {
        assert_eq!(describe_bus("system"), "system bus");
        assert_eq!(describe_bus("unix:path=/x"), "D-Bus bus at unix:path=/x");
    }
}
