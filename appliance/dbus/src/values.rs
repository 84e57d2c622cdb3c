// SPDX-License-Identifier: MIT OR Apache-2.0
//! The typed values of the interface: what each property, argument and signal carries.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zbus::{DeserializeDict, SerializeDict, Type};

/// The derives every name-typed value shares: its kebab-case name is its D-Bus value (`s`), its
/// serde value (config files, JSON) and its `Display`/`FromStr` form.
macro_rules! wire_name_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type,
            strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantNames,
        )]
        #[zbus(signature = "s")]
        #[serde(rename_all = "kebab-case")]
        #[strum(serialize_all = "kebab-case")]
        pub enum $name { $($body)* }
    };
}

wire_name_enum! {
    /// What the service is doing.
    #[derive(Default)]
    pub enum State {
        /// Checking its configuration, models and gallery; the gate is in its safe state.
        #[default]
        Starting,
        /// Frames flow and are decided on.
        Running,
        /// The pipeline failed and is being restarted; the gate is in its safe state.
        Degraded,
        /// The last journal write failed: nobody is let through (an unlock needs its row first)
        /// and each refused passenger gets the red lamp; back to running at the next row written.
        JournalFailed,
        /// The service has stopped; the gate is in its safe state.
        Stopped,
    }
}

wire_name_enum! {
    /// Operating mode of the gate, set by staff with `SetMode` (all but `emergency`).
    #[derive(Default)]
    pub enum Mode {
        /// Grant recognised, entitled passengers.
        #[default]
        Normal,
        /// Nobody is granted; recognised passengers are denied `disabled`.
        Locked,
        /// Free passage: the gate is held open, nothing is charged.
        Free,
        /// The emergency (fire-alarm) input is active: the gate is held open, nothing is
        /// charged, and `SetMode` is refused until the input is released. Set by the input only.
        Emergency,
    }
}

impl Mode {
    /// Whether the gate is held open and nobody is charged (free or emergency).
    pub fn is_free_passage(self) -> bool {
        matches!(self, Mode::Free | Mode::Emergency)
    }
}

wire_name_enum! {
    /// Why a passage was refused (`PassageDenied`'s argument, the journal's reason).
    pub enum DenyReason {
        /// Nobody in the gallery resembles the face.
        Unknown,
        /// Someone resembles the face, but not surely enough (or the identity kept changing).
        LowConfidence,
        /// More than one face at the gate.
        SeveralFaces,
        /// The identity passed within the anti-passback window.
        Passback,
        /// The identity is disabled, or the gate is locked.
        Disabled,
        /// The frame decided on was older than `policy.max_frame_age_ms`: the decision was dropped.
        StaleFrame,
        /// Two enrolled people fit the face about equally well (within `policy.min_margin`).
        Ambiguous,
        /// The gate follows the fleet's gallery and the office's lease is not in force (run
        /// out, or naming a generation the gate does not hold yet): nobody is matched.
        GalleryStale,
        /// The token shown is not one this gate accepts: not a token, malformed, signed by an
        /// untrusted key, a signature that does not verify, or issued for another embedder.
        TokenInvalid,
        /// The token shown has expired.
        TokenExpired,
        /// The token shown (or its passenger) is on the revocation list.
        TokenRevoked,
        /// The face at the gate is not the face the valid token shown was issued for.
        TokenMismatch,
        /// The face is a photo or a screen held up to the camera (fglive judged it an attack),
        /// or fglive never judged it live before the track had to be decided.
        PresentationAttack,
    }
}

wire_name_enum! {
    /// What the passage sensor made of a passage (the journal's `passage_outcomes`).
    pub enum PassageOutcome {
        /// The granted passenger went through.
        Passed,
        /// Nobody went through on the grant within `gate.pass_timeout_ms`: not charged.
        NotPassed,
        /// Someone went through with no grant of their own.
        Tailgating,
        /// Someone went through during an emergency release.
        Free,
    }
}

wire_name_enum! {
    /// The outcome of one passage.
    pub enum Verdict {
        Granted,
        Denied,
    }
}

/// The longest reason `Open` takes, in characters: a staff note, not a place to store data.
pub const OPEN_REASON_MAX_CHARS: usize = 200;

/// Checks `Open`'s reason: not blank, at most [`OPEN_REASON_MAX_CHARS`] characters, no control
/// characters (a newline would forge lines in the service's log). The refusal names the rule.
pub fn check_open_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() {
        return Err("the reason must not be empty".into());
    }
    let chars = reason.chars().count();
    if chars > OPEN_REASON_MAX_CHARS {
        return Err(format!(
            "the reason must be at most {OPEN_REASON_MAX_CHARS} characters (got {chars})"
        ));
    }
    if let Some(c) = reason.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the reason must not contain control characters (found {:?})",
            c
        ));
    }
    Ok(())
}

/// Which names `T` has, as `"a", "b" or "c"`: for messages that refuse a wrong one.
pub fn one_of<T: strum::VariantNames>() -> String {
    let quoted: Vec<String> = T::VARIANTS.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Parses a wire name, refusing a wrong one with the list of right ones (`what` names the kind:
/// "mode", "deny reason").
pub fn parse_name<T>(what: &str, name: &str) -> Result<T, String>
where
    T: FromStr + strum::VariantNames,
{
    name.parse()
        .map_err(|_| format!("unknown {what} {name:?} (expected {})", one_of::<T>()))
}

/// The last decision the gate made (`LastDecision`, `Stats()["last_decision"]`); every field is
/// absent (an empty dictionary) before the first one.
#[derive(Clone, Debug, Default, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zbus(signature = "dict")]
pub struct LastDecision {
    /// The journal's passage id (a UUID).
    pub passage_id: Option<String>,
    /// When it was decided, RFC 3339 in UTC.
    pub time: Option<String>,
    pub verdict: Option<Verdict>,
    /// Set on denials.
    pub reason: Option<DenyReason>,
    /// The person granted, or the best candidate of a denial.
    pub id: Option<String>,
    pub label: Option<String>,
    pub similarity: Option<f64>,
}

/// Everything the gate publishes: each property of the interface, plus the counters only
/// `Stats()` carries. `Stats()` returns this as one `a{sv}` under the field names.
#[derive(Clone, Debug, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zbus(signature = "dict")]
pub struct Stats {
    pub state: State,
    pub mode: Mode,
    /// Generation of the gallery being searched.
    pub gallery_generation: u64,
    /// People in that gallery.
    pub gallery_size: u64,
    /// The match threshold in force for that gallery's size (above 1: nothing matches).
    pub effective_threshold: f64,
    /// Expected false grants per stranger passage at that threshold, from the model's
    /// calibration; -1 where the calibration does not model it.
    pub expected_false_grant_rate: f64,
    /// The largest gallery the model serves at `policy.max_false_grant_rate` within
    /// `policy.max_false_reject_rate`; u64::MAX for no limit.
    pub safe_gallery_size: u64,
    /// Passages granted today.
    pub passages_today: u64,
    /// Refusals today.
    pub denied_today: u64,
    /// Frames per second the pipeline currently delivers.
    pub fps: f64,
    pub last_decision: LastDecision,
    /// facegated's version.
    pub version: String,
    /// Seconds since the service started.
    pub uptime_s: u64,
    /// Pipeline restarts since the service started.
    pub restarts: u64,
    /// Wall-clock time (ns since the Unix epoch) at which the running pipeline's stream time was
    /// zero, 0 before frames flow: puts decisions' video times on the clock, for latency checks.
    pub stream_start_unix_ns: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            state: State::default(),
            mode: Mode::default(),
            gallery_generation: 0,
            gallery_size: 0,
            effective_threshold: 0.0,
            expected_false_grant_rate: -1.0,
            safe_gallery_size: 0,
            passages_today: 0,
            denied_today: 0,
            fps: 0.0,
            last_decision: LastDecision::default(),
            version: String::new(),
            uptime_s: 0,
            restarts: 0,
            stream_start_unix_ns: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::wire::serialized::Context;
    use zbus::wire::{LE, to_bytes};

    fn round_trip<T>(value: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de> + Type,
    {
        let encoded = to_bytes(Context::new(LE, 0), value).unwrap();
        encoded.deserialize().unwrap().0
    }
    #[test]
    fn enums_travel_as_their_names() {
        assert_eq!(State::SIGNATURE, "s");
        assert_eq!(Mode::Locked.to_string(), "locked");
        assert_eq!(DenyReason::LowConfidence.to_string(), "low-confidence");
        assert_eq!("several-faces".parse(), Ok(DenyReason::SeveralFaces));
        assert_eq!(round_trip(&State::Degraded), State::Degraded);
        assert_eq!(State::JournalFailed.to_string(), "journal-failed");
        assert_eq!(PassageOutcome::NotPassed.to_string(), "not-passed");
        let e = parse_name::<Mode>("mode", "open").unwrap_err();
        assert_eq!(
            e,
            r#"unknown mode "open" (expected "normal", "locked", "free" or "emergency")"#
        );
    }

    #[test]
    fn open_reasons_are_short_printable_and_not_blank() {
        check_open_reason("wheelchair").unwrap();
        check_open_reason(&"é".repeat(OPEN_REASON_MAX_CHARS)).unwrap();
        let long = check_open_reason(&"x".repeat(OPEN_REASON_MAX_CHARS + 1)).unwrap_err();
        assert!(long.contains("at most 200 characters"), "{long}");
        for blank in ["", "  "] {
            assert!(check_open_reason(blank).unwrap_err().contains("empty"));
        }
        let forged = check_open_reason("ok\nERROR forged").unwrap_err();
        assert!(forged.contains("control characters"), "{forged}");
    }

    #[test]
    fn stats_is_a_dictionary_that_round_trips() {
        assert_eq!(Stats::SIGNATURE, "a{sv}");
        let stats = Stats {
            state: State::Running,
            mode: Mode::Free,
            gallery_generation: 7,
            gallery_size: 1234,
            effective_threshold: 0.4920,
            expected_false_grant_rate: 9.7e-5,
            safe_gallery_size: u64::MAX,
            passages_today: 56,
            denied_today: 3,
            fps: 14.5,
            last_decision: LastDecision {
                passage_id: Some("0193".into()),
                verdict: Some(Verdict::Denied),
                reason: Some(DenyReason::Passback),
                similarity: Some(0.71),
                ..LastDecision::default()
            },
            version: "1.2.3".into(),
            uptime_s: 3600,
            restarts: 2,
            stream_start_unix_ns: 1_700_000_000_000_000_000,
        };
        assert_eq!(round_trip(&stats), stats);
        assert_eq!(
            round_trip(&LastDecision::default()),
            LastDecision::default()
        );
    }
}
