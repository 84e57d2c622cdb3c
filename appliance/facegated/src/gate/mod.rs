// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate: unlock relay, green and red lamps, passage sensor and emergency inputs.
//!
//! [`Gate`] is what the service drives. Three backends: `simulated` (every output change
//! appended to a JSON-lines file, inputs read from a file), `rppal` (Raspberry Pi OS's GPIO) and
//! `gpiochip` (any kernel's GPIO character device). All run on the same timing core ([`Driver`]):
//! one state machine over the three outputs and one timer thread that switches them off at their
//! deadlines, so the simulated gate pulses, extends and falls back to its safe state exactly like
//! the real one. A backend only says how one output level is written ([`OutputWriter`]) and how
//! its two inputs are read ([`InputReader`]).
//!
//! Output rules (shared by both backends):
//! - relay level = a grant pulse is running OR the relay is held (by [`Gate::hold_open`], or by a
//!   safe state of `"open"`) OR the emergency input is active; green = a grant pulse is running
//!   (or the emergency input is active, with `emergency_lamp = "green"`); red = a refusal lamp is
//!   running.
//! - [`Gate::grant`]: relay and green on now, off after `pulse_ms` (with `passage_sensor`: after
//!   `pass_timeout_ms`, or at [`Gate::end_grant`] when the passage went through); a grant during a
//!   pulse moves the end to `now + pulse_ms` (the relay stays on throughout, nothing is
//!   re-written). A grant puts the red lamp out.
//! - [`Gate::set_emergency`]: while active, nothing releases the relay, the safe state, a stop and
//!   a panic included; [`open`] reads the input first, so the unit's `ExecStopPost=` and a start
//!   during an emergency never lock the gate either.
//! - [`Gate::deny`]: red on for `deny_ms` (a deny during the red lamp extends it; `deny_ms = 0`
//!   means no red lamp). A deny does not cut a running grant pulse.
//! - [`Gate::safe_state`]: cancels every timer and the hold; relay released (`locked`) or held
//!   (`open`), lamps off (but for the emergency release above). All three outputs are written
//!   even if unchanged. With `safe_state =
//!   "open"` the relay stays held until `hold_open(false)` (the service's "back to normal").
//! - Drop: the same as `safe_state`, recorded with cause `shutdown`, then the timer stops.
//!
//! Only changes are written otherwise (one action line per change in the simulated log).

mod gpiochip;
mod rpi;
mod simulated;

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// `[gate]` in facegate.toml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// `"simulated"` | `"rppal"` | `"gpiochip"`.
    pub backend: Backend,
    /// Unlock relay pulse (and green lamp), milliseconds.
    pub pulse_ms: u64,
    /// Red lamp after a refusal, milliseconds (0: no red lamp).
    pub deny_ms: u64,
    /// Outputs on start, stop, SIGTERM and panic: `"locked"` | `"open"`.
    pub safe_state: SafeState,
    /// Simulated backend: one JSON line per output change.
    pub actions_log: PathBuf,
    /// `[gate.pins]`: BCM numbers for the rppal backend, line offsets on `chip` for gpiochip.
    pub pins: Pins,
    /// The gpiochip backend's GPIO character device.
    pub chip: PathBuf,
    /// The turnstile reports each passage on the passage sensor input: a grant then holds the
    /// relay until its passage (or `pass_timeout_ms`) instead of for `pulse_ms`, and is
    /// journalled `passed` or `not-passed`; a passage nobody was granted is `tailgating`.
    pub passage_sensor: bool,
    /// With `passage_sensor`: how long a grant waits for its passage, milliseconds.
    pub pass_timeout_ms: u64,
    /// How often the inputs are read, milliseconds: the control cycle within which the gate
    /// follows the emergency input.
    pub input_poll_ms: u64,
    /// What the green lamp shows while the emergency input holds the gate open: `"green"` | `"off"`.
    pub emergency_lamp: EmergencyLamp,
    /// Simulated backend: the inputs' levels, a JSON object such as
    /// `{"passage_sensor": true, "emergency": false}` read every control cycle (replace it
    /// atomically); a missing file or key reads as inactive, like an unconnected input.
    pub simulated_inputs: PathBuf,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            backend: Backend::Simulated,
            pulse_ms: 800,
            deny_ms: 1500,
            safe_state: SafeState::Locked,
            actions_log: PathBuf::from("/var/lib/facegate/gate-actions.jsonl"),
            pins: Pins::default(),
            chip: PathBuf::from("/dev/gpiochip0"),
            passage_sensor: false,
            pass_timeout_ms: 6000,
            input_poll_ms: 20,
            emergency_lamp: EmergencyLamp::Green,
            simulated_inputs: PathBuf::from("/var/lib/facegate/gate-inputs.json"),
        }
    }
}

/// `[gate.pins]`: BCM GPIO numbers. `active_low` applies to every pin: an output is "on" when
/// driven low, an input is active when it reads low.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pins {
    pub relay: u8,
    pub green: u8,
    pub red: u8,
    pub passage_sensor: u8,
    pub emergency: u8,
    pub active_low: bool,
}

impl Default for Pins {
    fn default() -> Self {
        Pins {
            relay: 17,
            green: 27,
            red: 22,
            passage_sensor: 23,
            emergency: 24,
            active_low: false,
        }
    }
}

impl Pins {
    /// The pins with their configuration keys, in a fixed order.
    fn named(&self) -> [(&'static str, u8); 5] {
        [
            ("relay", self.relay),
            ("green", self.green),
            ("red", self.red),
            ("passage_sensor", self.passage_sensor),
            ("emergency", self.emergency),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Simulated,
    /// Raspberry Pi OS's `/dev/gpiomem` (rppal).
    Rppal,
    /// Any kernel's GPIO character device (`gate.chip`).
    Gpiochip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SafeState {
    /// Relay released: nobody passes.
    Locked,
    /// Relay held: free passage (e.g. where egress must stay possible on failure).
    Open,
}

/// The green lamp during an emergency release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmergencyLamp {
    /// Lit for as long as the gate is held open: passengers see that they may pass.
    Green,
    /// Dark: for turnstiles whose own controller lights the emergency signal.
    Off,
}

/// Highest BCM GPIO number on the 40-pin header.
const MAX_BCM_PIN: u8 = 27;

impl GateConfig {
    /// Checks every value; the message names the key (`gate.pulse_ms: must be 50..10000`).
    pub fn validate(&self) -> Result<(), GateError> {
        if !(50..=10_000).contains(&self.pulse_ms) {
            return Err(GateError::Config("gate.pulse_ms: must be 50..10000".into()));
        }
        if self.deny_ms > 10_000 {
            return Err(GateError::Config("gate.deny_ms: must be 0..10000".into()));
        }
        if !(500..=60_000).contains(&self.pass_timeout_ms) {
            return Err(GateError::Config(
                "gate.pass_timeout_ms: must be 500..60000".into(),
            ));
        }
        if !(5..=500).contains(&self.input_poll_ms) {
            return Err(GateError::Config(
                "gate.input_poll_ms: must be 5..500".into(),
            ));
        }
        // The kernel releases a GPIO character device's lines when their process ends, and
        // Debian's (mainline pinctrl-bcm2835) turns them back into inputs: a relay facegated
        // held for free passage would drop whenever the service is down.
        if self.backend == Backend::Gpiochip && self.safe_state == SafeState::Open {
            return Err(GateError::Config(
                "gate.safe_state: \"open\" cannot be held by backend \"gpiochip\" while facegated is not running (the kernel releases its lines): wire the turnstile to open when its relay is de-energised, and keep \"locked\"".into(),
            ));
        }
        if self.backend == Backend::Simulated {
            for (key, path) in [
                ("actions_log", &self.actions_log),
                ("simulated_inputs", &self.simulated_inputs),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(GateError::Config(format!(
                        "gate.{key}: must not be empty with backend \"simulated\""
                    )));
                }
            }
        }
        let named = self.pins.named();
        for (i, &(key, pin)) in named.iter().enumerate() {
            if pin > MAX_BCM_PIN {
                return Err(GateError::Config(format!(
                    "gate.pins.{key}: must be a BCM GPIO number 0..{MAX_BCM_PIN} (got {pin})"
                )));
            }
            if let Some(&(other, _)) = named[..i].iter().find(|&&(_, p)| p == pin) {
                return Err(GateError::Config(format!(
                    "gate.pins.{key}: GPIO {pin} is already used by gate.pins.{other}"
                )));
            }
        }
        Ok(())
    }
}

/// Everything that can go wrong with the gate; one line each.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A configuration value, with its key.
    #[error("{0}")]
    Config(String),
    /// rppal could not reach the GPIO (e.g. "Unknown Raspberry Pi model" off a Pi).
    #[error("gate backend rppal: {0}")]
    Rppal(#[source] rppal::gpio::Error),
    /// rppal refused one pin.
    #[error("gate backend rppal: gate.pins.{key} (GPIO {pin}): {source}")]
    RppalPin {
        key: &'static str,
        pin: u8,
        #[source]
        source: rppal::gpio::Error,
    },
    /// The GPIO character device refused (missing chip, a line out of range or held by another
    /// process, a failed write).
    #[error("gate backend gpiochip: {}: {what}: {reason}", chip.display())]
    Gpiochip {
        chip: PathBuf,
        what: String,
        reason: String,
    },
    /// The simulated backend's action log could not be opened or written.
    #[error("gate actions log {}: {source}", path.display())]
    ActionsLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The simulated backend's inputs file could not be read or is not an inputs object.
    #[error("gate inputs file {}: {reason}", path.display())]
    InputsFile { path: PathBuf, reason: String },
    /// A line of an action log that is not an action.
    #[error("gate actions log {} line {line}: {reason}", path.display())]
    ActionsLogFormat {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// An output write that failed in the timer thread (reported by the next call).
    #[error("gate output failed at a pulse end: {0}")]
    Deferred(String),
}

/// The gate the service drives.
pub trait Gate: Send {
    /// Outputs to the configured safe state: relay released (locked) or held (open), lamps off.
    /// Called on start, stop, SIGTERM and from the panic hook.
    fn safe_state(&mut self) -> Result<(), GateError>;
    /// One passage: relay on and green lamp on now, both off again after pulse_ms (timed by the
    /// backend, not the caller; a second grant during a pulse extends it).
    fn grant(&mut self) -> Result<(), GateError>;
    /// A refusal: red lamp for deny_ms.
    fn deny(&mut self) -> Result<(), GateError>;
    /// Free passage (mode "free"): relay held open until set back; false returns to normal (locked).
    fn hold_open(&mut self, open: bool) -> Result<(), GateError>;
    /// The inputs' levels now. The service reads them every `gate.input_poll_ms`.
    fn inputs(&mut self) -> Result<Inputs, GateError>;
    /// Follows the emergency input: while active the relay is held open (and the green lamp lit
    /// if `gate.emergency_lamp = "green"`), and nothing releases it, not a safe state, a stop or
    /// a crash: FaceGate never fights the fire-alarm release.
    fn set_emergency(&mut self, active: bool) -> Result<(), GateError>;
    /// The granted passage went through: the grant's pulse ends now (relay relocked, green
    /// off) instead of at its deadline.
    fn end_grant(&mut self) -> Result<(), GateError>;
    /// A handle that puts the outputs in their safe state without going through whoever holds
    /// the gate: for the panic hook, which may run on the thread that holds it.
    fn safe_state_handle(&self) -> SafeStateHandle;
}

/// The levels of the gate's two inputs ("active" whatever the pin polarity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inputs {
    /// The turnstile reports a passage (read only with `gate.passage_sensor`).
    pub passage_sensor: bool,
    /// The fire-alarm (emergency release) contact.
    pub emergency: bool,
}

/// Puts a gate's outputs in their safe state from anywhere, even while the [`Gate`] itself is
/// locked by a thread that is panicking.
#[derive(Clone)]
pub struct SafeStateHandle {
    shared: Arc<Shared>,
}

impl SafeStateHandle {
    /// How long [`SafeStateHandle::apply`] waits for the output lock: the timer thread holds it
    /// only for a write, so longer means the caller's own thread holds it.
    const LOCK_WAIT: Duration = Duration::from_millis(200);

    /// Relay released (or held, with safe state "open"), lamps off, timers cancelled.
    pub fn apply(&self) -> Result<(), GateError> {
        let deadline = Instant::now() + Self::LOCK_WAIT;
        let mut outputs = loop {
            match self.shared.outputs.try_lock() {
                Ok(outputs) => break outputs,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(GateError::Deferred(
                        "the gate outputs stayed locked by another thread".into(),
                    ));
                }
            }
        };
        let result = outputs.apply_safe_state(Cause::SafeState);
        drop(outputs);
        self.shared.wake.notify_all();
        result
    }
}

/// Picks the backend from `config.backend`, and puts it in its safe state before returning. An
/// active emergency input is followed from the first write: a start (or the unit's
/// ExecStopPost=) during a fire-alarm release never locks the gate, not even for a moment.
pub fn open(config: &GateConfig) -> Result<Box<dyn Gate>, GateError> {
    config.validate()?;
    let opened = match config.backend {
        Backend::Simulated => simulated::open(config)?,
        Backend::Rppal => rpi::open(config)?,
        Backend::Gpiochip => gpiochip::open(config)?,
    };
    start(config, opened)
}

/// The timing core on a backend's opened outputs and inputs, in its safe state (or held open
/// by an active emergency input).
fn start(config: &GateConfig, (writer, inputs): Opened) -> Result<Box<dyn Gate>, GateError> {
    let mut gate: Box<dyn Gate> = Box::new(BackedGate {
        driver: Driver::new(config, writer)?,
        inputs,
    });
    if gate.inputs()?.emergency {
        tracing::warn!("the emergency input is active: the gate is held open");
        gate.set_emergency(true)?;
    }
    gate.safe_state()?;
    Ok(gate)
}

/// One of the three outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    Relay,
    Green,
    Red,
}

impl Output {
    const ALL: [Output; 3] = [Output::Relay, Output::Green, Output::Red];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Output::Relay => "relay",
            Output::Green => "green",
            Output::Red => "red",
        })
    }
}

/// An output's logical level ("on" = relay energised / lamp lit, whatever the pin polarity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    On,
    Off,
}

impl Level {
    fn from_bool(on: bool) -> Level {
        if on { Level::On } else { Level::Off }
    }
}

/// Why an output changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// `safe_state()` (also on open).
    SafeState,
    Grant,
    Deny,
    /// A grant pulse or a red lamp reached its end.
    PulseEnd,
    HoldOpen,
    /// The passage sensor saw the granted passage through.
    Passed,
    /// The emergency input became active or was released.
    Emergency,
    /// The gate was dropped (service stop).
    Shutdown,
}

/// One line of the simulated backend's action log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// RFC 3339, UTC, microseconds (`2025-01-31T08:15:02.123456Z`).
    #[serde(serialize_with = "rfc3339_micros")]
    pub time: DateTime<Utc>,
    /// The same instant in nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    pub output: Output,
    pub level: Level,
    pub cause: Cause,
}

impl Action {
    fn now(output: Output, level: Level, cause: Cause) -> Action {
        let now = SystemTime::now();
        let unix_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let time = DateTime::<Utc>::from(now);
        Action {
            // The log carries microseconds; keep the in-memory value equal to what is read back.
            time: DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time),
            unix_ns,
            output,
            level,
            cause,
        }
    }
}

fn rfc3339_micros<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// Reads a simulated gate's action log, oldest first.
pub fn read_actions(path: impl AsRef<Path>) -> Result<Vec<Action>, GateError> {
    let path = path.as_ref();
    let io_err = |source| GateError::ActionsLog {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut actions = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let action = serde_json::from_str(&line).map_err(|e| GateError::ActionsLogFormat {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        actions.push(action);
    }
    Ok(actions)
}

// ---------------------------------------------------------------------------------------------
// The timing core shared by both backends.

/// How a backend sets one output. Called with the core's lock held, never concurrently.
pub(crate) trait OutputWriter: Send + 'static {
    fn write(&mut self, output: Output, level: Level, cause: Cause) -> Result<(), GateError>;
}

/// How a backend reads its two inputs.
pub(crate) trait InputReader: Send + 'static {
    fn read(&mut self) -> Result<Inputs, GateError>;
}

/// The levels a backend claims its outputs at, in [`Output`] order: the safe state, or the
/// emergency release when its input is active. Hardware backends read the inputs before they
/// claim the outputs, so that claiming never drops a relay held for an emergency.
fn claim_levels(config: &GateConfig, emergency: bool) -> [bool; 3] {
    [
        config.safe_state == SafeState::Open || emergency,
        emergency && config.emergency_lamp == EmergencyLamp::Green,
        false,
    ]
}

/// What a backend's `open` hands the core: its outputs, at their safe levels, and its inputs.
type Opened = (Box<dyn OutputWriter>, Box<dyn InputReader>);

/// A backend on the timing core: the one implementation of [`Gate`].
struct BackedGate {
    driver: Driver,
    inputs: Box<dyn InputReader>,
}

impl Gate for BackedGate {
    fn safe_state(&mut self) -> Result<(), GateError> {
        self.driver.safe_state()
    }
    fn grant(&mut self) -> Result<(), GateError> {
        self.driver.grant()
    }
    fn deny(&mut self) -> Result<(), GateError> {
        self.driver.deny()
    }
    fn hold_open(&mut self, open: bool) -> Result<(), GateError> {
        self.driver.hold_open(open)
    }
    fn inputs(&mut self) -> Result<Inputs, GateError> {
        self.inputs.read()
    }
    fn set_emergency(&mut self, active: bool) -> Result<(), GateError> {
        self.driver.set_emergency(active)
    }
    fn end_grant(&mut self) -> Result<(), GateError> {
        self.driver.end_grant()
    }
    fn safe_state_handle(&self) -> SafeStateHandle {
        self.driver.safe_state_handle()
    }
}

/// Output state: what each output should be, the running timers, and what was last written.
struct Outputs {
    writer: Box<dyn OutputWriter>,
    safe: SafeState,
    pulse: Duration,
    deny: Duration,
    /// End of the running grant pulse.
    pulse_until: Option<Instant>,
    /// End of the running red lamp.
    deny_until: Option<Instant>,
    /// Relay held (hold_open(true), or safe state "open").
    held: bool,
    /// The emergency input is active: relay held whatever else says.
    emergency: bool,
    emergency_lamp: EmergencyLamp,
    /// Last level written per output; None = unknown (never written, or the write failed).
    written: [Option<Level>; 3],
    /// A write error from the timer thread, reported by the next call.
    fault: Option<String>,
    shutdown: bool,
}

impl Outputs {
    /// Writes `level` if it differs from what was written (or always, with `force`).
    fn set(
        &mut self,
        output: Output,
        level: Level,
        cause: Cause,
        force: bool,
    ) -> Result<(), GateError> {
        let i = output.index();
        if !force && self.written[i] == Some(level) {
            return Ok(());
        }
        match self.writer.write(output, level, cause) {
            Ok(()) => {
                self.written[i] = Some(level);
                Ok(())
            }
            Err(e) => {
                self.written[i] = None;
                Err(e)
            }
        }
    }

    /// Relay on during a grant pulse, while held, and while the emergency input is active.
    fn relay_level(&self) -> Level {
        Level::from_bool(self.pulse_until.is_some() || self.held || self.emergency)
    }

    /// Green on during a grant pulse, and during an emergency if so configured.
    fn green_level(&self) -> Level {
        let emergency_green = self.emergency && self.emergency_lamp == EmergencyLamp::Green;
        Level::from_bool(self.pulse_until.is_some() || emergency_green)
    }

    /// Relay released or held per the safe state (held during an emergency), red off; every
    /// output written even if one fails.
    fn apply_safe_state(&mut self, cause: Cause) -> Result<(), GateError> {
        self.pulse_until = None;
        self.deny_until = None;
        self.held = self.safe == SafeState::Open;
        self.fault = None;
        let mut first_err = None;
        for output in Output::ALL {
            let level = match output {
                Output::Relay => self.relay_level(),
                Output::Green => self.green_level(),
                Output::Red => Level::Off,
            };
            if let Err(e) = self.set(output, level, cause, true) {
                tracing::error!("gate: could not put {output} in its safe state: {e}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn take_fault(&mut self) -> Result<(), GateError> {
        match self.fault.take() {
            Some(f) => Err(GateError::Deferred(f)),
            None => Ok(()),
        }
    }

    fn grant(&mut self, now: Instant) -> Result<(), GateError> {
        self.take_fault()?;
        self.pulse_until = Some(now + self.pulse);
        self.set(Output::Relay, Level::On, Cause::Grant, false)?;
        self.set(Output::Green, Level::On, Cause::Grant, false)?;
        self.deny_until = None;
        self.set(Output::Red, Level::Off, Cause::Grant, false)
    }

    fn deny(&mut self, now: Instant) -> Result<(), GateError> {
        self.take_fault()?;
        if self.deny.is_zero() {
            return Ok(());
        }
        self.deny_until = Some(now + self.deny);
        self.set(Output::Red, Level::On, Cause::Deny, false)
    }

    fn hold_open(&mut self, open: bool) -> Result<(), GateError> {
        self.take_fault()?;
        self.held = open;
        self.set(Output::Relay, self.relay_level(), Cause::HoldOpen, false)
    }

    /// Not behind [`Outputs::take_fault`]: an earlier failed write must not keep the gate shut
    /// in a fire.
    fn set_emergency(&mut self, active: bool) -> Result<(), GateError> {
        self.emergency = active;
        let relay = self.set(Output::Relay, self.relay_level(), Cause::Emergency, false);
        let green = self.set(Output::Green, self.green_level(), Cause::Emergency, false);
        relay.and(green)
    }

    fn end_grant(&mut self) -> Result<(), GateError> {
        self.take_fault()?;
        if self.pulse_until.take().is_none() {
            return Ok(());
        }
        self.set(Output::Relay, self.relay_level(), Cause::Passed, false)?;
        self.set(Output::Green, self.green_level(), Cause::Passed, false)
    }

    /// Ends every timer that is due at `now`.
    fn expire(&mut self, now: Instant) {
        let mut result = Ok(());
        if self.pulse_until.is_some_and(|t| t <= now) {
            self.pulse_until = None;
            result = self
                .set(Output::Relay, self.relay_level(), Cause::PulseEnd, false)
                .and(self.set(Output::Green, self.green_level(), Cause::PulseEnd, false));
        }
        if self.deny_until.is_some_and(|t| t <= now) {
            self.deny_until = None;
            result = result.and(self.set(Output::Red, Level::Off, Cause::PulseEnd, false));
        }
        if let Err(e) = result {
            tracing::error!("gate: {e}");
            self.fault = Some(e.to_string());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.pulse_until, self.deny_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

struct Shared {
    outputs: Mutex<Outputs>,
    wake: Condvar,
}

impl Shared {
    /// The lock, even if a panic poisoned it: the safe state must stay reachable.
    fn lock(&self) -> MutexGuard<'_, Outputs> {
        self.outputs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The timing core: output state machine plus the timer thread that ends pulses.
/// Dropping it puts the outputs in the safe state (cause `shutdown`) and stops the thread.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
}

impl Driver {
    /// Starts the timer; the outputs are not written until the first call.
    pub(crate) fn new(
        config: &GateConfig,
        writer: Box<dyn OutputWriter>,
    ) -> Result<Driver, GateError> {
        let shared = Arc::new(Shared {
            outputs: Mutex::new(Outputs {
                writer,
                safe: config.safe_state,
                // With a passage sensor the grant waits for its passage, which ends it early.
                pulse: Duration::from_millis(if config.passage_sensor {
                    config.pass_timeout_ms
                } else {
                    config.pulse_ms
                }),
                deny: Duration::from_millis(config.deny_ms),
                pulse_until: None,
                deny_until: None,
                held: config.safe_state == SafeState::Open,
                emergency: false,
                emergency_lamp: config.emergency_lamp,
                written: [None; 3],
                fault: None,
                shutdown: false,
            }),
            wake: Condvar::new(),
        });
        let for_timer = Arc::clone(&shared);
        let timer = std::thread::Builder::new()
            .name("gate-timer".into())
            .spawn(move || timer_loop(&for_timer))
            .map_err(|e| GateError::Deferred(format!("cannot start the gate timer: {e}")))?;
        Ok(Driver {
            shared,
            timer: Some(timer),
        })
    }

    pub(crate) fn safe_state(&mut self) -> Result<(), GateError> {
        let r = self.shared.lock().apply_safe_state(Cause::SafeState);
        self.shared.wake.notify_all();
        r
    }

    pub(crate) fn grant(&mut self) -> Result<(), GateError> {
        let r = self.shared.lock().grant(Instant::now());
        self.shared.wake.notify_all();
        r
    }

    pub(crate) fn deny(&mut self) -> Result<(), GateError> {
        let r = self.shared.lock().deny(Instant::now());
        self.shared.wake.notify_all();
        r
    }

    pub(crate) fn hold_open(&mut self, open: bool) -> Result<(), GateError> {
        self.shared.lock().hold_open(open)
    }

    pub(crate) fn set_emergency(&mut self, active: bool) -> Result<(), GateError> {
        self.shared.lock().set_emergency(active)
    }

    pub(crate) fn end_grant(&mut self) -> Result<(), GateError> {
        let r = self.shared.lock().end_grant();
        self.shared.wake.notify_all();
        r
    }

    pub(crate) fn safe_state_handle(&self) -> SafeStateHandle {
        SafeStateHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        {
            let mut outputs = self.shared.lock();
            // Errors are already logged by apply_safe_state; nobody is left to return them to.
            let _ = outputs.apply_safe_state(Cause::Shutdown);
            outputs.shutdown = true;
        }
        self.shared.wake.notify_all();
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
    }
}

fn timer_loop(shared: &Shared) {
    let mut outputs = shared.lock();
    loop {
        if outputs.shutdown {
            return;
        }
        let now = Instant::now();
        outputs.expire(now);
        outputs = match outputs.next_deadline() {
            Some(deadline) => {
                shared
                    .wake
                    .wait_timeout(outputs, deadline.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.wake.wait(outputs).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_config(dir: &Path, pulse_ms: u64, deny_ms: u64, safe: SafeState) -> GateConfig {
        GateConfig {
            backend: Backend::Simulated,
            pulse_ms,
            deny_ms,
            safe_state: safe,
            actions_log: dir.join("actions.jsonl"),
            simulated_inputs: dir.join("inputs.json"),
            ..GateConfig::default()
        }
    }

    /// Replaces the simulated inputs file atomically, as tests are told to.
    fn set_inputs(config: &GateConfig, inputs: &str) {
        let partial = config.simulated_inputs.with_extension("partial");
        std::fs::write(&partial, inputs).unwrap();
        std::fs::rename(&partial, &config.simulated_inputs).unwrap();
    }

    fn levels(actions: &[Action]) -> Vec<(Output, Level, Cause)> {
        actions
            .iter()
            .map(|a| (a.output, a.level, a.cause))
            .collect()
    }

    fn now_ns() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    const MS: u64 = 1_000_000;
    /// Scheduling slack allowed on top of a pulse (a test machine busy with other tests).
    const SLACK: u64 = 150 * MS;

    /// The action log once it holds at least `n` lines (polls for up to 5 s).
    fn wait_for(path: &Path, n: usize) -> Vec<Action> {
        let start = Instant::now();
        loop {
            let actions = read_actions(path).unwrap();
            if actions.len() >= n || start.elapsed() > Duration::from_secs(5) {
                return actions;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Actions after the initial safe state written by `open`.
    fn after_open(actions: &[Action]) -> Vec<Action> {
        assert!(actions.len() >= 3, "{actions:?}");
        assert!(actions[..3].iter().all(|a| a.cause == Cause::SafeState));
        actions[3..].to_vec()
    }

    fn find(actions: &[Action], output: Output, level: Level) -> Vec<&Action> {
        actions
            .iter()
            .filter(|a| a.output == output && a.level == level)
            .collect()
    }

    #[test]
    fn open_writes_safe_state_locked() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        assert_eq!(gate.inputs().unwrap(), Inputs::default());
        let actions = read_actions(&config.actions_log).unwrap();
        let got: Vec<_> = actions
            .iter()
            .map(|a| (a.output, a.level, a.cause))
            .collect();
        assert_eq!(
            got,
            vec![
                (Output::Relay, Level::Off, Cause::SafeState),
                (Output::Green, Level::Off, Cause::SafeState),
                (Output::Red, Level::Off, Cause::SafeState),
            ]
        );
    }

    #[test]
    fn safe_state_open_holds_relay_until_hold_open_false() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 100, SafeState::Open);
        let mut gate = open(&config).unwrap();
        let actions = read_actions(&config.actions_log).unwrap();
        let got: Vec<_> = actions.iter().map(|a| (a.output, a.level)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Relay, Level::On),
                (Output::Green, Level::Off),
                (Output::Red, Level::Off)
            ]
        );
        // A grant in the open safe state lights green; the relay stays held past the pulse.
        gate.grant().unwrap();
        let rest = after_open(&wait_for(&config.actions_log, 5));
        let got: Vec<_> = rest.iter().map(|a| (a.output, a.level, a.cause)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Green, Level::On, Cause::Grant),
                (Output::Green, Level::Off, Cause::PulseEnd),
            ]
        );
        gate.hold_open(false).unwrap();
        let last = read_actions(&config.actions_log).unwrap().pop().unwrap();
        assert_eq!(
            (last.output, last.level, last.cause),
            (Output::Relay, Level::Off, Cause::HoldOpen)
        );
    }

    #[test]
    fn grant_pulses_relay_and_green() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        let before = now_ns();
        gate.grant().unwrap();
        let after = now_ns();
        let rest = after_open(&wait_for(&config.actions_log, 7));
        let got: Vec<_> = rest.iter().map(|a| (a.output, a.level, a.cause)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Relay, Level::On, Cause::Grant),
                (Output::Green, Level::On, Cause::Grant),
                (Output::Relay, Level::Off, Cause::PulseEnd),
                (Output::Green, Level::Off, Cause::PulseEnd),
            ]
        );
        let on = rest[0].unix_ns;
        let off = rest[2].unix_ns;
        assert!(
            on >= before && on <= after,
            "relay on inside the grant call"
        );
        let pulse = off - on;
        assert!(
            (60 * MS..60 * MS + SLACK).contains(&pulse),
            "pulse {} ms",
            pulse as f64 / 1e6
        );
        // The timestamp text agrees with unix_ns and has microseconds.
        let text = serde_json::to_value(&rest[0]).unwrap()["time"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(text.len(), "2025-01-31T08:15:02.123456Z".len(), "{text}");
        assert!(text.ends_with('Z'));
        assert_eq!(rest[0].time.timestamp_micros() as u64, on / 1000);
    }

    #[test]
    fn second_grant_extends_the_pulse() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 400, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.grant().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let second = now_ns();
        gate.grant().unwrap();
        let second_done = now_ns();
        wait_for(&config.actions_log, 7);
        std::thread::sleep(Duration::from_millis(100));
        let rest = after_open(&read_actions(&config.actions_log).unwrap());
        let ons = find(&rest, Output::Relay, Level::On);
        let offs = find(&rest, Output::Relay, Level::Off);
        assert_eq!(
            (ons.len(), offs.len()),
            (1, 1),
            "one continuous pulse: {rest:?}"
        );
        assert_eq!(find(&rest, Output::Green, Level::Off).len(), 1);
        let off = offs[0].unix_ns;
        assert!(
            off >= second + 400 * MS,
            "ends pulse_ms after the second grant"
        );
        assert!(
            off < second_done + 400 * MS + SLACK,
            "late end: {} ms after the second grant",
            (off - second) as f64 / 1e6
        );
        assert!(off - ons[0].unix_ns >= 500 * MS);
    }

    #[test]
    fn deny_lights_red_for_deny_ms() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 80, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.deny().unwrap();
        let rest = after_open(&wait_for(&config.actions_log, 5));
        let got: Vec<_> = rest.iter().map(|a| (a.output, a.level, a.cause)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Red, Level::On, Cause::Deny),
                (Output::Red, Level::Off, Cause::PulseEnd),
            ]
        );
        let lit = rest[1].unix_ns - rest[0].unix_ns;
        assert!(
            (80 * MS..80 * MS + SLACK).contains(&lit),
            "red {} ms",
            lit as f64 / 1e6
        );
    }

    #[test]
    fn grant_puts_out_the_red_lamp() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 5000, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.deny().unwrap();
        gate.grant().unwrap();
        let rest = after_open(&read_actions(&config.actions_log).unwrap());
        let got: Vec<_> = rest.iter().map(|a| (a.output, a.level, a.cause)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Red, Level::On, Cause::Deny),
                (Output::Relay, Level::On, Cause::Grant),
                (Output::Green, Level::On, Cause::Grant),
                (Output::Red, Level::Off, Cause::Grant),
            ]
        );
    }

    #[test]
    fn hold_open_holds_relay_past_a_pulse() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.hold_open(true).unwrap();
        gate.grant().unwrap();
        wait_for(&config.actions_log, 6);
        gate.hold_open(false).unwrap();
        let rest = after_open(&read_actions(&config.actions_log).unwrap());
        let got: Vec<_> = rest.iter().map(|a| (a.output, a.level, a.cause)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Relay, Level::On, Cause::HoldOpen),
                (Output::Green, Level::On, Cause::Grant),
                (Output::Green, Level::Off, Cause::PulseEnd),
                (Output::Relay, Level::Off, Cause::HoldOpen),
            ]
        );
    }

    #[test]
    fn hold_open_false_during_a_pulse_keeps_the_pulse() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 500, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.hold_open(true).unwrap();
        gate.grant().unwrap();
        gate.hold_open(false).unwrap();
        let rest = after_open(&wait_for(&config.actions_log, 7));
        let got: Vec<_> = rest.iter().map(|a| (a.output, a.level, a.cause)).collect();
        assert_eq!(
            got,
            vec![
                (Output::Relay, Level::On, Cause::HoldOpen),
                (Output::Green, Level::On, Cause::Grant),
                (Output::Relay, Level::Off, Cause::PulseEnd),
                (Output::Green, Level::Off, Cause::PulseEnd),
            ]
        );
    }

    #[test]
    fn safe_state_cancels_a_pulse() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 300, 300, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.grant().unwrap();
        gate.deny().unwrap();
        gate.safe_state().unwrap();
        std::thread::sleep(Duration::from_millis(450));
        let rest = after_open(&read_actions(&config.actions_log).unwrap());
        assert!(rest.iter().all(|a| a.cause != Cause::PulseEnd), "{rest:?}");
        let tail: Vec<_> = rest[rest.len() - 3..]
            .iter()
            .map(|a| (a.output, a.level, a.cause))
            .collect();
        assert_eq!(
            tail,
            vec![
                (Output::Relay, Level::Off, Cause::SafeState),
                (Output::Green, Level::Off, Cause::SafeState),
                (Output::Red, Level::Off, Cause::SafeState),
            ]
        );
    }

    #[test]
    fn the_simulated_inputs_file_is_read_as_levels_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        // No file: both inputs unconnected, inactive.
        assert_eq!(gate.inputs().unwrap(), Inputs::default());
        set_inputs(&config, r#"{"passage_sensor": true}"#);
        let expected = Inputs {
            passage_sensor: true,
            emergency: false,
        };
        assert_eq!(gate.inputs().unwrap(), expected);
        set_inputs(&config, r#"{"emergency": true, "passage_sensor": false}"#);
        assert!(gate.inputs().unwrap().emergency);
        for (bad, says) in [
            (r#"{"emergency": 1}"#, "invalid type"),
            (r#"{"fire": true}"#, "unknown field `fire`"),
            ("{", "EOF"),
        ] {
            set_inputs(&config, bad);
            let e = gate.inputs().unwrap_err().to_string();
            assert!(e.starts_with("gate inputs file "), "{e}");
            assert!(e.contains("inputs.json") && e.contains(says), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_emergency_input_holds_the_relay_through_safe_state_hold_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 60, 100, SafeState::Locked);
        let mut gate = open(&config).unwrap();
        gate.set_emergency(true).unwrap();
        gate.safe_state().unwrap();
        gate.hold_open(false).unwrap();
        gate.grant().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        gate.set_emergency(false).unwrap();
        gate.set_emergency(true).unwrap();
        drop(gate);
        let actions = read_actions(&config.actions_log).unwrap();
        let rest = after_open(&actions);
        // The relay is never released while the input is active: once on, it goes off only at
        // the release, and is on again after.
        let relay: Vec<_> = find(&rest, Output::Relay, Level::Off)
            .iter()
            .map(|a| a.cause)
            .collect();
        assert_eq!(relay, vec![Cause::Emergency], "{rest:#?}");
        assert_eq!(
            levels(&rest[..2]),
            vec![
                (Output::Relay, Level::On, Cause::Emergency),
                (Output::Green, Level::On, Cause::Emergency),
            ]
        );
        assert_eq!(
            levels(&rest[rest.len() - 3..]),
            vec![
                (Output::Relay, Level::On, Cause::Shutdown),
                (Output::Green, Level::On, Cause::Shutdown),
                (Output::Red, Level::Off, Cause::Shutdown),
            ]
        );
    }

    #[test]
    fn opening_during_an_emergency_never_writes_the_relay_off_and_the_lamp_can_stay_dark() {
        let dir = tempfile::tempdir().unwrap();
        let config = GateConfig {
            emergency_lamp: EmergencyLamp::Off,
            ..sim_config(dir.path(), 60, 100, SafeState::Locked)
        };
        set_inputs(&config, r#"{"emergency": true}"#);
        // What the unit's ExecStopPost= does: open (safe state) and drop.
        drop(open(&config).unwrap());
        let actions = read_actions(&config.actions_log).unwrap();
        assert!(
            find(&actions, Output::Relay, Level::Off).is_empty(),
            "{actions:#?}"
        );
        assert!(
            find(&actions, Output::Green, Level::On).is_empty(),
            "{actions:#?}"
        );
        assert_eq!(
            levels(&actions[..1]),
            vec![(Output::Relay, Level::On, Cause::Emergency)]
        );
    }

    #[test]
    fn with_a_passage_sensor_a_grant_waits_for_its_passage_and_end_grant_relocks() {
        let dir = tempfile::tempdir().unwrap();
        let config = GateConfig {
            passage_sensor: true,
            pass_timeout_ms: 600,
            ..sim_config(dir.path(), 60, 100, SafeState::Locked)
        };
        let mut gate = open(&config).unwrap();
        gate.grant().unwrap();
        // Well past pulse_ms: the grant waits for pass_timeout_ms.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read_actions(&config.actions_log).unwrap().len(), 5);
        gate.end_grant().unwrap();
        // A second end is nothing to do.
        gate.end_grant().unwrap();
        gate.grant().unwrap();
        let rest = after_open(&wait_for(&config.actions_log, 11));
        assert_eq!(
            levels(&rest),
            vec![
                (Output::Relay, Level::On, Cause::Grant),
                (Output::Green, Level::On, Cause::Grant),
                (Output::Relay, Level::Off, Cause::Passed),
                (Output::Green, Level::Off, Cause::Passed),
                (Output::Relay, Level::On, Cause::Grant),
                (Output::Green, Level::On, Cause::Grant),
                (Output::Relay, Level::Off, Cause::PulseEnd),
                (Output::Green, Level::Off, Cause::PulseEnd),
            ]
        );
        let waited = rest[6].unix_ns - rest[4].unix_ns;
        assert!(
            (600 * MS..600 * MS + SLACK).contains(&waited),
            "waited {} ms",
            waited as f64 / 1e6
        );
    }

    #[test]
    fn drop_goes_to_safe_state() {
        for safe in [SafeState::Locked, SafeState::Open] {
            let dir = tempfile::tempdir().unwrap();
            let config = sim_config(dir.path(), 5000, 5000, safe);
            let mut gate = open(&config).unwrap();
            gate.grant().unwrap();
            gate.deny().unwrap();
            drop(gate);
            let actions = read_actions(&config.actions_log).unwrap();
            let tail: Vec<_> = actions[actions.len() - 3..]
                .iter()
                .map(|a| (a.output, a.level, a.cause))
                .collect();
            let relay = if safe == SafeState::Open {
                Level::On
            } else {
                Level::Off
            };
            assert_eq!(
                tail,
                vec![
                    (Output::Relay, relay, Cause::Shutdown),
                    (Output::Green, Level::Off, Cause::Shutdown),
                    (Output::Red, Level::Off, Cause::Shutdown),
                ]
            );
            // Nothing is written after the drop (the timer is stopped).
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(
                read_actions(&config.actions_log).unwrap().len(),
                actions.len()
            );
        }
    }

    #[test]
    fn the_safe_state_handle_releases_the_relay_while_the_gate_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let config = sim_config(dir.path(), 5000, 100, SafeState::Locked);
        let gate = Mutex::new(open(&config).unwrap());
        let handle = gate.lock().unwrap().safe_state_handle();
        // The panic hook runs on the panicking thread, which may be the one holding the gate.
        let mut held = gate.lock().unwrap();
        held.grant().unwrap();
        handle.apply().unwrap();
        let actions = read_actions(&config.actions_log).unwrap();
        let relay = actions
            .iter()
            .rev()
            .find(|a| a.output == Output::Relay)
            .unwrap();
        assert_eq!((relay.level, relay.cause), (Level::Off, Cause::SafeState));
        drop(held);
    }

    /// No x86 machine is a Raspberry Pi, so there rppal must refuse; on ARM boards the outcome
    /// depends on the board, and this test is not built.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rppal_off_a_pi_is_an_error_not_a_panic() {
        let config = GateConfig {
            backend: Backend::Rppal,
            ..GateConfig::default()
        };
        let result = std::panic::catch_unwind(|| open(&config).map(|_| ()));
        let result = result.expect("no panic");
        let err = result.expect_err("an x86 machine is not a Raspberry Pi");
        let msg = err.to_string();
        assert!(msg.contains("rppal"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        eprintln!("{msg}");
    }

    #[test]
    fn gpiochip_refuses_a_safe_state_it_cannot_hold_once_the_service_is_gone() {
        let config = GateConfig {
            backend: Backend::Gpiochip,
            safe_state: SafeState::Open,
            ..GateConfig::default()
        };
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("gate.safe_state: \"open\" cannot be held"),
            "{e}"
        );
        let locked = GateConfig {
            safe_state: SafeState::Locked,
            ..config
        };
        locked.validate().unwrap();
    }

    #[test]
    fn gpiochip_without_the_chip_or_on_a_file_that_is_not_one_is_one_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_chip = dir.path().join("not-a-chip");
        std::fs::write(&not_a_chip, b"").unwrap();
        for chip in [dir.path().join("gpiochip9"), not_a_chip] {
            let config = GateConfig {
                backend: Backend::Gpiochip,
                chip: chip.clone(),
                ..GateConfig::default()
            };
            let e = open(&config).err().expect("no such chip").to_string();
            assert!(
                e.starts_with(&format!(
                    "gate backend gpiochip: {}: gate.pins.passage_sensor, emergency",
                    chip.display()
                )),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn hardware_claims_its_outputs_held_open_during_an_emergency() {
        let locked = GateConfig::default();
        assert_eq!(claim_levels(&locked, false), [false, false, false]);
        assert_eq!(claim_levels(&locked, true), [true, true, false]);
        let open_dark = GateConfig {
            safe_state: SafeState::Open,
            emergency_lamp: EmergencyLamp::Off,
            ..GateConfig::default()
        };
        assert_eq!(claim_levels(&open_dark, false), [true, false, false]);
        assert_eq!(claim_levels(&open_dark, true), [true, false, false]);
    }

    #[test]
    fn missing_log_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let config = GateConfig {
            actions_log: dir.path().join("nope/actions.jsonl"),
            ..GateConfig::default()
        };
        let msg = open(&config).map(|_| ()).unwrap_err().to_string();
        assert!(msg.contains("nope/actions.jsonl"), "{msg}");
    }

    #[test]
    fn read_actions_reports_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(
            &path,
            "{\"time\":\"2025-01-31T08:15:02.123456Z\",\"unix_ns\":1738311302123456000,\"output\":\"relay\",\"level\":\"on\",\"cause\":\"grant\"}\nnot json\n",
        )
        .unwrap();
        let msg = read_actions(&path).unwrap_err().to_string();
        assert!(msg.contains("a.jsonl line 2"), "{msg}");
    }

    #[test]
    fn config_defaults_and_toml_keys() {
        let config: GateConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(config, GateConfig::default());
        assert_eq!(config.pulse_ms, 800);
        assert_eq!(config.deny_ms, 1500);
        assert_eq!(config.pins.relay, 17);
        assert!(!config.passage_sensor);
        assert_eq!(config.emergency_lamp, EmergencyLamp::Green);
        config.validate().unwrap();
        let config: GateConfig = serde_json::from_value(serde_json::json!({
            "backend": "rppal", "pulse_ms": 500, "deny_ms": 0, "safe_state": "open",
            "actions_log": "/tmp/a.jsonl",
            "pins": {"relay": 5, "green": 6, "red": 13, "passage_sensor": 19, "emergency": 26, "active_low": true}
        }))
        .unwrap();
        assert_eq!(config.backend, Backend::Rppal);
        assert_eq!(config.safe_state, SafeState::Open);
        assert!(config.pins.active_low);
        config.validate().unwrap();
        let err =
            serde_json::from_value::<GateConfig>(serde_json::json!({"pulse": 5})).unwrap_err();
        assert!(err.to_string().contains("pulse"), "{err}");
        let err = serde_json::from_value::<GateConfig>(serde_json::json!({"backend": "gpio"}))
            .unwrap_err();
        assert!(err.to_string().contains("gpio"), "{err}");
    }

    #[test]
    fn config_validation_names_the_key() {
        let check = |f: &dyn Fn(&mut GateConfig)| {
            let mut c = GateConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            check(&|c| c.pulse_ms = 10),
            "gate.pulse_ms: must be 50..10000"
        );
        assert_eq!(
            check(&|c| c.pulse_ms = 10_001),
            "gate.pulse_ms: must be 50..10000"
        );
        assert_eq!(
            check(&|c| c.deny_ms = 20_000),
            "gate.deny_ms: must be 0..10000"
        );
        assert_eq!(
            check(&|c| c.pins.red = 28),
            "gate.pins.red: must be a BCM GPIO number 0..27 (got 28)"
        );
        assert_eq!(
            check(&|c| c.pins.emergency = 17),
            "gate.pins.emergency: GPIO 17 is already used by gate.pins.relay"
        );
        assert_eq!(
            check(&|c| c.actions_log = PathBuf::new()),
            "gate.actions_log: must not be empty with backend \"simulated\""
        );
        assert_eq!(
            check(&|c| c.simulated_inputs = PathBuf::new()),
            "gate.simulated_inputs: must not be empty with backend \"simulated\""
        );
        assert_eq!(
            check(&|c| c.pass_timeout_ms = 100),
            "gate.pass_timeout_ms: must be 500..60000"
        );
        assert_eq!(
            check(&|c| c.input_poll_ms = 0),
            "gate.input_poll_ms: must be 5..500"
        );
        let mut ok = GateConfig {
            pulse_ms: 50,
            deny_ms: 10_000,
            ..GateConfig::default()
        };
        ok.validate().unwrap();
        ok.pulse_ms = 10_000;
        ok.validate().unwrap();
    }
}
