// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the turnstile's inputs mean: which grant each passage belongs to, which grants nobody
//! used, and when the fire-alarm release starts and ends.
//!
//! Plain state, no I/O: the service feeds it every grant and every reading of the inputs (once
//! per control cycle, `gate.input_poll_ms`) and carries out what it answers (journal rows,
//! relocking, the red lamp, signals).
//!
//! The passage sensor is the turnstile controller's "passage done" output: one rising edge per
//! person through. With `gate.passage_sensor`:
//! - a rising edge while a grant waits is that grant's passage (`passed`, the oldest waiting
//!   grant first); when no other grant waits, the relay relocks at once;
//! - a grant with no passage within `gate.pass_timeout_ms` is `not-passed`: not charged (the
//!   timing core has relocked the relay at the same deadline by itself);
//! - a rising edge with no grant waiting is `tailgating`, naming the grant it followed when
//!   that one passed within the last `pass_timeout_ms`;
//! - during an emergency release a rising edge with no grant waiting is a `free` passage.
//!
//! Without a sensor, passages are not judged (every grant is charged, as before) and only the
//! emergency input is followed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::gate::Inputs;

/// What the inputs said, for the service to carry out in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// The fire-alarm contact closed: free passage until it opens again.
    EmergencyStarted,
    /// The contact opened again: back to the mode before the emergency.
    EmergencyEnded,
    /// The grant's passenger went through. `relock`: no other grant waits, so the relay may
    /// lock now.
    Passed { grant: String, relock: bool },
    /// Nobody went through on the grant within the timeout.
    NotPassed { grant: String },
    /// Someone went through with no grant waiting, after `following` when it passed lately.
    Tailgating { following: Option<String> },
    /// Someone went through with no grant waiting during an emergency release.
    Free,
}

/// A grant waiting for its passage.
#[derive(Clone, Debug)]
struct Waiting {
    grant: String,
    until: Instant,
}

/// The turnstile's state between two readings.
#[derive(Debug)]
pub struct Turnstile {
    sensor: bool,
    pass_timeout: Duration,
    waiting: VecDeque<Waiting>,
    last_passed: Option<(String, Instant)>,
    inputs: Inputs,
}

impl Turnstile {
    /// `sensor`: the turnstile has a passage sensor (`gate.passage_sensor`).
    pub fn new(sensor: bool, pass_timeout: Duration) -> Turnstile {
        Turnstile {
            sensor,
            pass_timeout,
            waiting: VecDeque::new(),
            last_passed: None,
            inputs: Inputs::default(),
        }
    }

    /// Whether the emergency input was active at the last reading.
    pub fn emergency(&self) -> bool {
        self.inputs.emergency
    }

    /// The gate opened for `grant` (a face granted, or a staff opening) at `now`.
    pub fn granted(&mut self, grant: &str, now: Instant) {
        if self.sensor {
            self.waiting.push_back(Waiting {
                grant: grant.to_string(),
                until: now + self.pass_timeout,
            });
        }
    }

    /// One reading of the inputs at `now`.
    pub fn read(&mut self, inputs: Inputs, now: Instant) -> Vec<Happening> {
        let mut happened = Vec::new();
        if inputs.emergency != self.inputs.emergency {
            happened.push(if inputs.emergency {
                Happening::EmergencyStarted
            } else {
                Happening::EmergencyEnded
            });
        }
        // Timeouts before the edge: a passage seen after its grant's deadline is not that
        // grant's (the relay had relocked by then).
        while let Some(first) = self.waiting.front()
            && first.until <= now
        {
            let grant = self
                .waiting
                .pop_front()
                .map(|w| w.grant)
                .unwrap_or_default();
            happened.push(Happening::NotPassed { grant });
        }
        let rising = self.sensor && inputs.passage_sensor && !self.inputs.passage_sensor;
        if rising {
            happened.push(match self.waiting.pop_front() {
                Some(Waiting { grant, .. }) => {
                    self.last_passed = Some((grant.clone(), now));
                    Happening::Passed {
                        grant,
                        relock: self.waiting.is_empty(),
                    }
                }
                None if inputs.emergency => Happening::Free,
                None => Happening::Tailgating {
                    following: self
                        .last_passed
                        .as_ref()
                        .filter(|(_, at)| now.duration_since(*at) <= self.pass_timeout)
                        .map(|(grant, _)| grant.clone()),
                },
            });
        }
        self.inputs = inputs;
        happened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(5000);

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn levels(passage_sensor: bool, emergency: bool) -> Inputs {
        Inputs {
            passage_sensor,
            emergency,
        }
    }

    /// Plays a timeline of (milliseconds, grant to record or inputs to read) and collects
    /// every happening with the time it happened at.
    enum Step {
        Grant(&'static str),
        Read(bool, bool),
    }

    fn play(turnstile: &mut Turnstile, timeline: &[(u64, Step)]) -> Vec<(u64, Happening)> {
        let start = Instant::now();
        let mut out = Vec::new();
        for (at, step) in timeline {
            match step {
                Step::Grant(id) => turnstile.granted(id, ms(start, *at)),
                Step::Read(sensor, emergency) => {
                    for h in turnstile.read(levels(*sensor, *emergency), ms(start, *at)) {
                        out.push((*at, h));
                    }
                }
            }
        }
        out
    }

    fn passed(grant: &str, relock: bool) -> Happening {
        Happening::Passed {
            grant: grant.into(),
            relock,
        }
    }

    use Step::{Grant, Read};

    #[test]
    fn a_grant_followed_by_a_passage_is_passed_once_and_relocks() {
        let mut t = Turnstile::new(true, TIMEOUT);
        let got = play(
            &mut t,
            &[
                (0, Grant("a")),
                (20, Read(false, false)),
                (900, Read(true, false)),
                (920, Read(true, false)),
                (1100, Read(false, false)),
                (9000, Read(false, false)),
            ],
        );
        assert_eq!(got, vec![(900, passed("a", true))]);
    }

    #[test]
    fn a_grant_without_a_passage_is_not_passed_at_its_deadline_and_a_late_edge_is_tailgating() {
        let mut t = Turnstile::new(true, TIMEOUT);
        let got = play(
            &mut t,
            &[
                (0, Grant("a")),
                (4990, Read(false, false)),
                (5000, Read(false, false)),
                (5010, Read(false, false)),
                (5020, Read(true, false)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (5000, Happening::NotPassed { grant: "a".into() }),
                // "a" never passed: nobody is followed.
                (5020, Happening::Tailgating { following: None }),
            ]
        );
    }

    #[test]
    fn a_second_passage_on_one_grant_is_tailgating_after_that_grant() {
        let mut t = Turnstile::new(true, TIMEOUT);
        let got = play(
            &mut t,
            &[
                (0, Grant("a")),
                (800, Read(true, false)),
                (1000, Read(false, false)),
                (1400, Read(true, false)),
                (1600, Read(false, false)),
                // Long after: an unpaid passage that follows nobody.
                (9000, Read(true, false)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (800, passed("a", true)),
                (
                    1400,
                    Happening::Tailgating {
                        following: Some("a".into())
                    }
                ),
                (9000, Happening::Tailgating { following: None }),
            ]
        );
    }

    #[test]
    fn two_waiting_grants_pass_in_order_and_only_the_last_relocks() {
        let mut t = Turnstile::new(true, TIMEOUT);
        let got = play(
            &mut t,
            &[
                (0, Grant("a")),
                (300, Grant("b")),
                (700, Read(true, false)),
                (900, Read(false, false)),
                (1500, Read(true, false)),
            ],
        );
        assert_eq!(
            got,
            vec![(700, passed("a", false)), (1500, passed("b", true))]
        );
    }

    #[test]
    fn the_emergency_contact_starts_and_ends_once_and_its_passages_are_free() {
        let mut t = Turnstile::new(true, TIMEOUT);
        let got = play(
            &mut t,
            &[
                (0, Read(false, true)),
                (20, Read(false, true)),
                (500, Read(true, true)),
                (700, Read(false, true)),
                (900, Read(false, false)),
                (920, Read(false, false)),
            ],
        );
        assert!(t.read(levels(false, false), Instant::now()).is_empty());
        assert_eq!(
            got,
            vec![
                (0, Happening::EmergencyStarted),
                (500, Happening::Free),
                (900, Happening::EmergencyEnded),
            ]
        );
    }

    #[test]
    fn without_a_sensor_grants_are_not_judged_and_the_sensor_is_ignored() {
        let mut t = Turnstile::new(false, TIMEOUT);
        let got = play(
            &mut t,
            &[
                (0, Grant("a")),
                (500, Read(true, false)),
                (9000, Read(false, false)),
                (9100, Read(false, true)),
            ],
        );
        assert_eq!(got, vec![(9100, Happening::EmergencyStarted)]);
        assert!(t.emergency());
    }
}
