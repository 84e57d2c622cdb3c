// SPDX-License-Identifier: MIT OR Apache-2.0
//! The turnstile's inputs with the real facegated on a private bus, the demo video and the
//! simulated gate, whose passage sensor and emergency contact the tests drive through its inputs
//! file: the fire-alarm release frees the gate and nothing locks it while it lasts (not SetMode,
//! not SIGTERM, not the unit's ExecStopPost=), and the passage sensor journals each grant as
//! passed or not passed and a second passage on one grant as tailgating.

use std::path::Path;
use std::time::{Duration, Instant};

use facegate_dbus::{GateProxy, Mode, PassageOutcome, State};
use facegate_devtools::gate_rig::{GateRig, RigFiles, enrolled, is_unlock};
use facegated::gate::{Action, Cause, Inputs, Level, Output};
use facegated::journal::OutcomeRecord;
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The tests play video in real time; two at once on two cores would starve each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const EMERGENCY: Inputs = Inputs {
    passage_sensor: false,
    emergency: true,
};
const QUIET: Inputs = Inputs {
    passage_sensor: false,
    emergency: false,
};

fn rig(scratch: &tempfile::TempDir, pass_timeout_ms: u64) -> GateRig {
    let files = RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated")))
        .expect("repository files");
    let mut rig = GateRig::new(files, scratch.path(), &enrolled()).expect("rig starts");
    rig.extra_env.extend([
        ("FACEGATE_GATE__PASSAGE_SENSOR".into(), "true".into()),
        (
            "FACEGATE_GATE__PASS_TIMEOUT_MS".into(),
            pass_timeout_ms.to_string(),
        ),
    ]);
    rig
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Polls `check` every 10 ms until it answers, for up to 10 s.
async fn eventually<T>(what: &str, rig: &GateRig, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; log:\n{}",
            rig.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_mode(gate: &GateProxy<'_>, rig: &GateRig, mode: Mode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.mode().await.unwrap() != mode {
        assert!(
            Instant::now() < deadline,
            "Mode never became {mode}; log:\n{}",
            rig.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first relay write at or after `since_ns` with this level and cause.
fn relay_after(actions: &[Action], since_ns: u64, level: Level, cause: Cause) -> Option<Action> {
    actions
        .iter()
        .find(|a| {
            a.unix_ns >= since_ns
                && a.output == Output::Relay
                && a.level == level
                && a.cause == cause
        })
        .cloned()
}

fn relay_released_after(actions: &[Action], since_ns: u64) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| a.unix_ns >= since_ns && a.output == Output::Relay && a.level == Level::Off)
        .cloned()
        .collect()
}

/// The passage sensor's pulse for one person through.
async fn one_passage(rig: &GateRig, emergency: bool) {
    rig.set_inputs(Inputs {
        passage_sensor: true,
        emergency,
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    rig.set_inputs(Inputs {
        passage_sensor: false,
        emergency,
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn outcomes(rig: &GateRig) -> Vec<OutcomeRecord> {
    rig.outcomes().unwrap()
}

#[test]
fn the_emergency_input_frees_the_gate_at_once_and_nothing_locks_it_until_released() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = rig(&scratch, 3000);
    let mut child = rig.spawn().unwrap();
    runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while gate.state().await.unwrap() != State::Running {
            assert!(
                Instant::now() < deadline,
                "never running: {}",
                rig.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The contact closes: the relay follows within a control cycle, then the mode.
        let closed = unix_now_ns();
        rig.set_inputs(EMERGENCY).unwrap();
        let held = eventually("the relay held open", &rig, || {
            relay_after(&rig.actions().unwrap(), closed, Level::On, Cause::Emergency)
        })
        .await;
        eprintln!(
            "emergency input to relay held: {:.1} ms",
            (held.unix_ns - closed) as f64 / 1e6
        );
        wait_for_mode(&gate, &rig, Mode::Emergency).await;

        // Staff cannot set another mode while it lasts, and nobody can set "emergency".
        let refused = gate.set_mode(Mode::Locked).await.unwrap_err();
        assert!(
            refused.to_string().contains("emergency input is active"),
            "{refused}"
        );
        let refused = gate.set_mode(Mode::Emergency).await.unwrap_err();
        assert_eq!(
            zbus::DBusError::name(&refused),
            "org.freedesktop.DBus.Error.InvalidArgs"
        );
        assert_eq!(gate.mode().await.unwrap(), Mode::Emergency);

        // Someone walks through: a free passage.
        one_passage(&rig, true).await;
        eventually("a free passage journalled", &rig, || {
            outcomes(&rig)
                .iter()
                .any(|o| o.outcome == PassageOutcome::Free)
                .then_some(())
        })
        .await;
        assert!(
            relay_released_after(&rig.actions().unwrap(), closed).is_empty(),
            "held throughout"
        );

        // The contact opens: back to normal, the relay released.
        let opened = unix_now_ns();
        rig.set_inputs(QUIET).unwrap();
        eventually("the relay released", &rig, || {
            relay_after(
                &rig.actions().unwrap(),
                opened,
                Level::Off,
                Cause::Emergency,
            )
        })
        .await;
        wait_for_mode(&gate, &rig, Mode::Normal).await;

        // Closed again, then the service is stopped in the middle of it.
        rig.set_inputs(EMERGENCY).unwrap();
        wait_for_mode(&gate, &rig, Mode::Emergency).await;
    });
    let before_stop = unix_now_ns();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success(), "log: {}", rig.log_text());
    // The unit's ExecStopPost= runs next: it too leaves the gate open while the contact is closed.
    rig.safe_state().unwrap();
    let actions = rig.actions().unwrap();
    assert!(
        relay_released_after(&actions, before_stop).is_empty(),
        "neither the stop nor safe-state locks the gate during an emergency: {actions:#?}"
    );
    let last = actions
        .iter()
        .rev()
        .find(|a| a.output == Output::Relay)
        .unwrap();
    assert_eq!(last.level, Level::On);

    // Released with the service down: the next safe state locks.
    rig.set_inputs(QUIET).unwrap();
    let released = unix_now_ns();
    rig.safe_state().unwrap();
    let actions = rig.actions().unwrap();
    assert!(relay_after(&actions, released, Level::Off, Cause::SafeState).is_some());
    let last = actions
        .iter()
        .rev()
        .find(|a| a.output == Output::Relay)
        .unwrap();
    assert_eq!(last.level, Level::Off);

    let modes: Vec<Mode> = rig.mode_changes().unwrap().iter().map(|m| m.mode).collect();
    assert_eq!(modes, [Mode::Emergency, Mode::Normal, Mode::Emergency]);
    let free: Vec<_> = outcomes(&rig)
        .into_iter()
        .filter(|o| o.outcome == PassageOutcome::Free)
        .collect();
    assert_eq!(free.len(), 1, "{free:?}");
    assert_eq!(free[0].passage, None);
}

#[test]
fn the_passage_sensor_journals_passed_not_passed_and_tailgating_once_each() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = rig(&scratch, 1500);
    let mut child = rig.spawn().unwrap();
    let (first, second, tailgated) = runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        let mut granted = gate.receive_passage_granted().await.unwrap();
        let mut tailgating = gate.receive_tailgating().await.unwrap();
        let grant_timeout = Duration::from_secs(60);

        // The first grant's passenger goes through, and someone right behind them.
        let signal = tokio::time::timeout(grant_timeout, granted.next()).await;
        let first = signal
            .expect("a first grant")
            .unwrap()
            .args()
            .unwrap()
            .passage_id()
            .to_string();
        tokio::time::sleep(Duration::from_millis(200)).await;
        one_passage(&rig, false).await;
        one_passage(&rig, false).await;
        let signal = tokio::time::timeout(Duration::from_secs(10), tailgating.next())
            .await
            .expect("a Tailgating signal")
            .unwrap();
        let args = signal.args().unwrap();
        let tailgated = (args.passage_id().to_string(), args.outcome_id().to_string());

        // Nobody uses the second grant.
        let signal = tokio::time::timeout(grant_timeout, granted.next()).await;
        let second = signal
            .expect("a second grant")
            .unwrap()
            .args()
            .unwrap()
            .passage_id()
            .to_string();
        eventually("the second grant not passed", &rig, || {
            outcomes(&rig)
                .iter()
                .any(|o| o.passage.as_deref() == Some(second.as_str()))
                .then_some(())
        })
        .await;
        (first, second, tailgated)
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success(), "log: {}", rig.log_text());

    let about = |grant: &str| -> Vec<PassageOutcome> {
        outcomes(&rig)
            .iter()
            .filter(|o| o.passage.as_deref() == Some(grant))
            .map(|o| o.outcome)
            .collect()
    };
    assert_eq!(
        about(&first),
        [PassageOutcome::Passed, PassageOutcome::Tailgating]
    );
    assert_eq!(about(&second), [PassageOutcome::NotPassed]);
    let tailgating_row = outcomes(&rig)
        .into_iter()
        .find(|o| o.outcome == PassageOutcome::Tailgating)
        .unwrap();
    assert_eq!(tailgated, (first.clone(), tailgating_row.id));
    assert!(
        rig.passages()
            .unwrap()
            .iter()
            .any(|p| p.id == first && p.granted),
        "the outcome names the grant's passage"
    );

    // The first grant relocked at its passage and the red lamp lit for the tailgater; the
    // second relocked at its deadline.
    let actions = rig.actions().unwrap();
    let unlocks: Vec<&Action> = actions.iter().filter(|a| is_unlock(a)).collect();
    assert!(unlocks.len() >= 2, "{actions:#?}");
    let relock = |after: u64| {
        actions
            .iter()
            .find(|a| a.unix_ns > after && a.output == Output::Relay && a.level == Level::Off)
            .map(|a| a.cause)
    };
    assert_eq!(relock(unlocks[0].unix_ns), Some(Cause::Passed));
    assert_eq!(relock(unlocks[1].unix_ns), Some(Cause::PulseEnd));
    assert!(
        actions.iter().any(|a| a.unix_ns > unlocks[0].unix_ns
            && a.unix_ns < unlocks[1].unix_ns
            && a.output == Output::Red
            && a.level == Level::On),
        "red for the tailgater: {actions:#?}"
    );
}
