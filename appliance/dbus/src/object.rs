// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate object: every method, property and signal of `org.facegate.Gate1`, defined once.
//! The service serves it ([`serve`], then publishes through [`GateBus`]); zbus generates the
//! client proxy ([`GateProxy`]) and the introspection data from the same definition.
//!
//! The methods that act on the gate (`Open`, `SetMode`, `ReloadGallery`) are for privileged
//! callers only, decided on the caller's uid as the bus daemon reports it (the system-bus policy
//! file `systemd/org.facegate.Gate.conf` is the first line of defence, this check the second).
//! What the gate does is behind [`GateControl`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use zbus::message::Header;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{Connection, fdo, interface};

use crate::{
    BUS_NAME, BusAddress, DbusError, DenyReason, LastDecision, Mode, OBJECT_PATH, State, Stats,
};

/// The gate's operations the bus may trigger; implemented by the service.
///
/// Methods are called on a blocking thread (they may write the journal or move the gate).
pub trait GateControl: Send + Sync + 'static {
    /// Whether the caller with this uid may call the acting methods; a refusal says who may
    /// ("root and members of group facegate-staff").
    fn authorize(&self, uid: u32) -> Result<(), String>;
    /// A staff opening by the caller `uid`: recorded like a passage; returns the passage id. The
    /// reason has passed [`check_open_reason`](crate::check_open_reason).
    fn open(&self, reason: &str, uid: u32) -> Result<String, ControlError>;
    /// Switches the mode; once this returns `Ok` the `Mode` property reads `mode`.
    fn set_mode(&self, mode: Mode) -> Result<(), ControlError>;
    /// Reloads the gallery; returns its generation.
    fn reload_gallery(&self) -> Result<u64, ControlError>;
}

/// What a [`GateControl`] operation may fail with; mapped to D-Bus errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The caller's argument is wrong (an empty reason…): `org.freedesktop.DBus.Error.InvalidArgs`.
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

/// What the object publishes. A plain mutex of its own (held only to copy or swap values), so
/// that publishing never waits for a method call in progress.
struct Published {
    stats: Stats,
    /// When `stats` was last set, to keep `uptime_s` in `Stats()` current between updates.
    updated: Instant,
}

fn lock(published: &Mutex<Published>) -> MutexGuard<'_, Published> {
    published.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The exported object.
pub struct Gate {
    published: Arc<Mutex<Published>>,
    control: Arc<dyn GateControl>,
    version: String,
}

fn blocking_failed(e: tokio::task::JoinError) -> fdo::Error {
    fdo::Error::Failed(format!("gate control failed: {e}"))
}

impl Gate {
    fn published(&self) -> MutexGuard<'_, Published> {
        lock(&self.published)
    }

    /// Refuses the call unless [`GateControl::authorize`] accepts the sender's uid; returns it.
    async fn authorize(
        &self,
        method: &str,
        header: &Header<'_>,
        connection: &Connection,
    ) -> fdo::Result<u32> {
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
        let control = self.control.clone();
        let allowed = tokio::task::spawn_blocking(move || control.authorize(uid))
            .await
            .map_err(blocking_failed)?;
        match allowed {
            Ok(()) => {
                tracing::info!(method, uid, %sender, "privileged D-Bus call allowed");
                Ok(uid)
            }
            Err(who) => {
                tracing::warn!(method, uid, %sender, "refused D-Bus call: the caller is not {who}");
                Err(fdo::Error::AccessDenied(format!(
                    "{method} is for {who} only; uid {uid} is neither"
                )))
            }
        }
    }

    async fn control<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn GateControl) -> Result<T, ControlError> + Send + 'static,
    ) -> fdo::Result<T> {
        let control = self.control.clone();
        Ok(tokio::task::spawn_blocking(move || call(control.as_ref()))
            .await
            .map_err(blocking_failed)??)
    }
}

#[interface(
    name = "org.facegate.Gate1",
    proxy(
        default_service = "org.facegate.Gate",
        default_path = "/org/facegate/Gate"
    )
)]
impl Gate {
    /// Opens the gate for a staff passage, recorded like a passage, and emits StaffOpened.
    /// Privileged. The reason is 1 to 200 characters without control characters (InvalidArgs
    /// otherwise).
    #[zbus(out_args("passage_id"))]
    async fn open(
        &self,
        reason: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<String> {
        let uid = self.authorize("Open", &header, connection).await?;
        crate::check_open_reason(reason).map_err(|rule| {
            tracing::warn!("refused Open: {rule}");
            fdo::Error::InvalidArgs(format!("Open: {rule}"))
        })?;
        let owned = reason.to_owned();
        let passage_id = self
            .control(move |control| control.open(&owned, uid))
            .await?;
        if let Err(e) = Self::staff_opened(&emitter, &passage_id, reason, uid).await {
            tracing::warn!(passage_id, uid, "cannot emit StaffOpened: {e}");
        }
        Ok(passage_id)
    }

    /// Sets the mode: "normal", "locked" or "free" ("emergency" follows the emergency input
    /// only, and while it is active every SetMode fails). Privileged. The change is journalled first:
    /// when that fails, the mode stays as it was and the call fails. Mode reads the new value as
    /// soon as this returns.
    async fn set_mode(
        &self,
        mode: Mode,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        self.authorize("SetMode", &header, connection).await?;
        self.control(move |control| control.set_mode(mode)).await?;
        // Published here rather than at the service's next status update, which may be a
        // publishing interval away: a client reading Mode after SetMode returned sees it.
        let changed = {
            let mut published = self.published();
            std::mem::replace(&mut published.stats.mode, mode) != mode
        };
        if changed && let Err(e) = self.mode_changed(&emitter).await {
            tracing::warn!(property = "Mode", "cannot emit PropertiesChanged: {e}");
        }
        Ok(())
    }

    /// Reloads the gallery from disk and returns its generation: a generation that fails the
    /// gallery's checks is refused (Failed, with the reason) and the one in use stays; a sound
    /// one is searched from the next frame on (the call waits for the switch, up to 5 s).
    /// Privileged.
    #[zbus(out_args("generation"))]
    async fn reload_gallery(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<u64> {
        self.authorize("ReloadGallery", &header, connection).await?;
        self.control(|control| control.reload_gallery()).await
    }

    /// Every property under a snake_case key (state, mode, gallery_generation, gallery_size,
    /// effective_threshold, expected_false_grant_rate, safe_gallery_size, passages_today,
    /// denied_today, fps, last_decision, version) plus uptime_s (t), restarts
    /// (t: pipeline restarts) and stream_start_unix_ns (t). For anyone.
    #[zbus(out_args("stats"))]
    async fn stats(&self) -> Stats {
        let published = self.published();
        let mut stats = published.stats.clone();
        stats.uptime_s += published.updated.elapsed().as_secs();
        stats.version.clone_from(&self.version);
        stats
    }

    /// "starting", "running", "degraded", "journal-failed" or "stopped".
    #[zbus(property)]
    async fn state(&self) -> State {
        self.published().stats.state
    }

    /// "normal", "locked" or "free".
    #[zbus(property)]
    async fn mode(&self) -> Mode {
        self.published().stats.mode
    }

    /// Generation of the gallery being searched.
    #[zbus(property)]
    async fn gallery_generation(&self) -> u64 {
        self.published().stats.gallery_generation
    }

    /// People in that gallery.
    #[zbus(property)]
    async fn gallery_size(&self) -> u64 {
        self.published().stats.gallery_size
    }

    /// The match threshold in force for the gallery's size: the larger of policy.threshold and
    /// the calibrated threshold for policy.max_false_grant_rate (above 1: nothing matches).
    #[zbus(property)]
    async fn effective_threshold(&self) -> f64 {
        self.published().stats.effective_threshold
    }

    /// Expected false grants per stranger passage at that threshold, from the model's
    /// calibration; -1 where the calibration does not model it.
    #[zbus(property)]
    async fn expected_false_grant_rate(&self) -> f64 {
        self.published().stats.expected_false_grant_rate
    }

    /// The largest gallery the model serves at policy.max_false_grant_rate within
    /// policy.max_false_reject_rate (18446744073709551615: no limit). A GallerySize above it
    /// is unsafe.
    #[zbus(property)]
    async fn safe_gallery_size(&self) -> u64 {
        self.published().stats.safe_gallery_size
    }

    /// Passages granted today.
    #[zbus(property)]
    async fn passages_today(&self) -> u64 {
        self.published().stats.passages_today
    }

    /// Refusals today.
    #[zbus(property)]
    async fn denied_today(&self) -> u64 {
        self.published().stats.denied_today
    }

    /// Frames per second the pipeline delivers.
    #[zbus(property)]
    async fn fps(&self) -> f64 {
        self.published().stats.fps
    }

    /// The last decision (passage_id, time, verdict, reason, id, label, similarity); an empty
    /// dictionary before any.
    #[zbus(property)]
    async fn last_decision(&self) -> LastDecision {
        self.published().stats.last_decision.clone()
    }

    /// facegated's version.
    #[zbus(property(emits_changed_signal = "const"))]
    async fn version(&self) -> String {
        self.version.clone()
    }

    /// A person was let through.
    #[zbus(signal)]
    async fn passage_granted(
        emitter: &SignalEmitter<'_>,
        passage_id: &str,
        id: &str,
        similarity: f64,
    ) -> zbus::Result<()>;

    /// A person was refused: "unknown", "low-confidence", "ambiguous", "several-faces", "passback",
    /// "disabled", "stale-frame", "gallery-stale", "token-invalid", "token-expired",
    /// "token-revoked", "token-mismatch" or "presentation-attack".
    #[zbus(signal)]
    async fn passage_denied(emitter: &SignalEmitter<'_>, reason: DenyReason) -> zbus::Result<()>;

    /// Staff opened the gate with Open: its passage id, reason and the caller's uid.
    #[zbus(signal)]
    async fn staff_opened(
        emitter: &SignalEmitter<'_>,
        passage_id: &str,
        reason: &str,
        uid: u32,
    ) -> zbus::Result<()>;

    /// The passage sensor saw someone go through with no grant of their own: the passage id of
    /// the grant they followed ("" when no grant passed lately), and the id of the row
    /// journalled `tailgating` in passage_outcomes ("" when the journal write failed). The red
    /// lamp lights.
    #[zbus(signal)]
    async fn tailgating(
        emitter: &SignalEmitter<'_>,
        passage_id: &str,
        outcome_id: &str,
    ) -> zbus::Result<()>;

    /// A journal write failed (the detail says why, e.g. the disk is full): the decision it was
    /// for did not open the gate. State is "journal-failed" until a row is written again.
    #[zbus(signal)]
    async fn journal_failed(emitter: &SignalEmitter<'_>, detail: &str) -> zbus::Result<()>;
}

/// The served gate object: publish status and passages through it.
#[derive(Clone)]
pub struct GateBus {
    connection: Connection,
    gate: InterfaceRef<Gate>,
    published: Arc<Mutex<Published>>,
    bus: BusAddress,
    /// Serialises [`GateBus::update`]s so their signals leave in the order the values were set.
    updating: Arc<tokio::sync::Mutex<()>>,
}

/// Connects to `bus`, exports the gate object and takes the name `org.facegate.Gate`.
/// `version` is the constant `Version` property.
pub async fn serve(
    bus: &BusAddress,
    control: Arc<dyn GateControl>,
    version: &str,
) -> Result<GateBus, DbusError> {
    let published = Arc::new(Mutex::new(Published {
        stats: Stats {
            version: version.to_string(),
            ..Stats::default()
        },
        updated: Instant::now(),
    }));
    let gate = Gate {
        published: published.clone(),
        control,
        version: version.to_string(),
    };
    let failed = |what: String| {
        let bus = bus.clone();
        move |source| DbusError::Bus { bus, what, source }
    };
    // Export the object before taking the name, so no call to the name finds it missing.
    let connection = bus
        .builder()
        .serve_at(OBJECT_PATH, gate)
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
        | Err(zbus::Error::NameTaken) => return Err(DbusError::NameTaken { bus: bus.clone() }),
        Err(source) => return Err(failed(format!("cannot own the name {BUS_NAME}"))(source)),
    }
    let gate = connection
        .object_server()
        .interface::<_, Gate>(OBJECT_PATH)
        .await
        .map_err(failed(format!("the object {OBJECT_PATH} is not served")))?;
    tracing::info!(name = BUS_NAME, %bus, "D-Bus service ready");
    Ok(GateBus {
        connection,
        gate,
        published,
        bus: bus.clone(),
        updating: Arc::new(tokio::sync::Mutex::new(())),
    })
}

impl GateBus {
    /// Publishes `stats`: sets the properties and emits `PropertiesChanged` for each property
    /// whose value changed (nothing when nothing did). Bus failures are logged.
    pub async fn update(&self, stats: Stats) {
        self.update_from(|| stats).await
    }

    /// Publishes what `current` returns, taken while the published values are held: a value
    /// another writer (`SetMode`) published meanwhile is never replaced by an older reading.
    pub async fn update_from(&self, current: impl FnOnce() -> Stats) {
        let _order = self.updating.lock().await;
        let (old, stats) = {
            let mut published = lock(&self.published);
            let stats = current();
            published.updated = Instant::now();
            (
                std::mem::replace(&mut published.stats, stats.clone()),
                stats,
            )
        };
        let gate = self.gate.get().await;
        let emitter = self.gate.signal_emitter();
        let mut emitted = Vec::new();
        if old.state != stats.state {
            emitted.push(("State", gate.state_changed(emitter).await));
        }
        if old.mode != stats.mode {
            emitted.push(("Mode", gate.mode_changed(emitter).await));
        }
        if old.gallery_generation != stats.gallery_generation {
            let sent = gate.gallery_generation_changed(emitter).await;
            emitted.push(("GalleryGeneration", sent));
        }
        if old.gallery_size != stats.gallery_size {
            emitted.push(("GallerySize", gate.gallery_size_changed(emitter).await));
        }
        if old.effective_threshold.to_bits() != stats.effective_threshold.to_bits() {
            let sent = gate.effective_threshold_changed(emitter).await;
            emitted.push(("EffectiveThreshold", sent));
        }
        if old.expected_false_grant_rate.to_bits() != stats.expected_false_grant_rate.to_bits() {
            let sent = gate.expected_false_grant_rate_changed(emitter).await;
            emitted.push(("ExpectedFalseGrantRate", sent));
        }
        if old.safe_gallery_size != stats.safe_gallery_size {
            let sent = gate.safe_gallery_size_changed(emitter).await;
            emitted.push(("SafeGallerySize", sent));
        }
        if old.passages_today != stats.passages_today {
            emitted.push(("PassagesToday", gate.passages_today_changed(emitter).await));
        }
        if old.denied_today != stats.denied_today {
            emitted.push(("DeniedToday", gate.denied_today_changed(emitter).await));
        }
        if old.fps.to_bits() != stats.fps.to_bits() {
            emitted.push(("Fps", gate.fps_changed(emitter).await));
        }
        if old.last_decision != stats.last_decision {
            emitted.push(("LastDecision", gate.last_decision_changed(emitter).await));
        }
        for (property, sent) in emitted {
            if let Err(e) = sent {
                tracing::warn!(property, "cannot emit PropertiesChanged: {e}");
            }
        }
    }

    /// Emits `PassageGranted(passage_id, id, similarity)`. Bus failures are logged.
    pub async fn passage_granted(&self, passage_id: &str, id: &str, similarity: f64) {
        if let Err(e) = self.gate.passage_granted(passage_id, id, similarity).await {
            tracing::warn!(passage_id, id, "cannot emit PassageGranted: {e}");
        }
    }

    /// Emits `PassageDenied(reason)`. Bus failures are logged.
    pub async fn passage_denied(&self, reason: DenyReason) {
        if let Err(e) = self.gate.passage_denied(reason).await {
            tracing::warn!(%reason, "cannot emit PassageDenied: {e}");
        }
    }

    /// Emits `Tailgating(passage_id, outcome_id)`. Bus failures are logged.
    pub async fn tailgating(&self, passage_id: &str, outcome_id: &str) {
        if let Err(e) = self.gate.tailgating(passage_id, outcome_id).await {
            tracing::warn!(passage_id, outcome_id, "cannot emit Tailgating: {e}");
        }
    }

    /// Emits `JournalFailed(detail)`. Bus failures are logged.
    pub async fn journal_failed(&self, detail: &str) {
        if let Err(e) = self.gate.journal_failed(detail).await {
            tracing::warn!(detail, "cannot emit JournalFailed: {e}");
        }
    }

    /// The stats last published with [`GateBus::update`].
    pub fn stats(&self) -> Stats {
        lock(&self.published).stats.clone()
    }

    /// The bus this is served on.
    pub fn bus(&self) -> &BusAddress {
        &self.bus
    }

    /// Leaves the bus (the name is released).
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}
