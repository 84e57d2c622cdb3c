// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate on any Linux kernel's GPIO character device (`gate.chip`, uAPI v2 through crate
//! gpiocdev): the shared timing core driving three output lines, and two input lines read every
//! control cycle. Unlike rppal it needs no `/dev/gpiomem`, which only Raspberry Pi OS's kernel
//! has: on a Raspberry Pi 4 under Debian's kernel, `/dev/gpiochip0` is the SoC's pin controller
//! and its line offsets are the BCM numbers of `[gate.pins]`.
//!
//! Polarity is the kernel's: with `pins.active_low` every line is requested active-low, so the
//! values written and read here are logical ("on", "active") on any wiring. The inputs are
//! claimed first and the outputs then at their safe levels (held open while the emergency input
//! is active), so claiming them never glitches the relay; inputs are biased towards
//! inactive (pull-down, or pull-up when active-low) so an unconnected input reads as not
//! triggered.
//!
//! When the process ends the kernel releases the lines, and what they do then is the kernel's:
//! Debian's (mainline pinctrl-bcm2835) turns a released line back into an input, so the relay
//! and lamps are no longer driven and fall to their de-energised state until facegated claims
//! them again; Raspberry Pi OS's kernel keeps the last level by default. The unit's
//! `ExecStopPost=` (`facegated safe-state`) writes the safe state, and its lines are released as
//! it exits too. So with this backend the turnstile's own wiring must make "de-energised" safe:
//! locked for a normal passage, and the fire-alarm release taken by the turnstile's controller
//! (which is where it usually is). `safe_state = "open"`, which needs a process to hold the
//! relay, is refused.
//!
//! The backend reaches the chip through [`Chip`]: gpiocdev's requests on a real one, and in the
//! tests a fake that keeps each line's physical level the way the kernel does (no kernel this
//! runs on in CI has gpio-sim), so claim order, polarity, bias and line numbers are tested at
//! that boundary; gpiocdev's own uAPI calls are not.

use std::path::{Path, PathBuf};

use gpiocdev::Request;
use gpiocdev::line::{Bias, Offset, Value};

use super::{
    Cause, GateConfig, GateError, InputReader, Inputs, Level, Opened, Output, OutputWriter,
    claim_levels,
};

/// What facegated's lines are labelled with in `gpioinfo`.
const CONSUMER: &str = "facegated";

/// How one line is claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Input(Bias),
    /// Driven at this logical value from the moment it is claimed.
    Output(Value),
}

/// One line of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LineClaim {
    offset: Offset,
    direction: Direction,
}

/// A GPIO chip as the backend uses it: one request claims a set of lines, every line of it
/// active-low or none.
trait Chip {
    type Lines: ClaimedLines;
    fn path(&self) -> &Path;
    fn claim(&self, lines: &[LineClaim], active_low: bool) -> Result<Self::Lines, gpiocdev::Error>;
}

/// Claimed lines, read and written in logical values (the request's polarity applied).
trait ClaimedLines: Send + 'static {
    fn value(&self, offset: Offset) -> Result<Value, gpiocdev::Error>;
    fn set_value(&self, offset: Offset, value: Value) -> Result<(), gpiocdev::Error>;
}

/// The kernel's GPIO character device, through gpiocdev (uAPI v2).
struct KernelChip<'a>(&'a Path);

impl Chip for KernelChip<'_> {
    type Lines = Request;

    fn path(&self) -> &Path {
        self.0
    }

    fn claim(&self, lines: &[LineClaim], active_low: bool) -> Result<Request, gpiocdev::Error> {
        let mut request = Request::builder();
        request.on_chip(self.0).with_consumer(CONSUMER);
        for line in lines {
            // Each setting applies to the line just selected.
            request.with_line(line.offset);
            match line.direction {
                Direction::Input(bias) => request.as_input().with_bias(bias),
                Direction::Output(value) => request.as_output(value),
            };
            if active_low {
                request.as_active_low();
            }
        }
        request.request()
    }
}

impl ClaimedLines for Request {
    fn value(&self, offset: Offset) -> Result<Value, gpiocdev::Error> {
        Request::value(self, offset)
    }
    fn set_value(&self, offset: Offset, value: Value) -> Result<(), gpiocdev::Error> {
        Request::set_value(self, offset, value)
    }
}

fn chip_error(chip: &Path, what: &str) -> impl Fn(gpiocdev::Error) -> GateError {
    let (chip, what) = (chip.to_path_buf(), what.to_string());
    move |source| GateError::Gpiochip {
        chip: chip.clone(),
        what: what.clone(),
        reason: source.to_string(),
    }
}

fn value(on: bool) -> Value {
    if on { Value::Active } else { Value::Inactive }
}

/// Claims the lines on `gate.chip`. A missing chip, a line out of its range or one another
/// process holds is one line naming the chip and the lines.
pub(super) fn open(config: &GateConfig) -> Result<Opened, GateError> {
    open_on(&KernelChip(&config.chip), config)
}

fn open_on<C: Chip>(chip: &C, config: &GateConfig) -> Result<Opened, GateError> {
    let pins = &config.pins;
    // The inputs first: the outputs are claimed at levels that follow the emergency input.
    // Biased towards inactive, so that an unconnected input reads as not triggered.
    let bias = if pins.active_low {
        Bias::PullUp
    } else {
        Bias::PullDown
    };
    let (passage_sensor, emergency) = (
        Offset::from(pins.passage_sensor),
        Offset::from(pins.emergency),
    );
    let inputs = [passage_sensor, emergency].map(|offset| LineClaim {
        offset,
        direction: Direction::Input(bias),
    });
    let lines = chip.claim(&inputs, pins.active_low).map_err(chip_error(
        chip.path(),
        &format!(
            "gate.pins.passage_sensor, emergency (lines {}, {})",
            pins.passage_sensor, pins.emergency
        ),
    ))?;
    let mut inputs = LineReader {
        lines,
        passage_sensor,
        emergency,
        chip: chip.path().to_path_buf(),
    };

    let offsets = [pins.relay, pins.green, pins.red].map(Offset::from);
    let levels = claim_levels(config, inputs.read()?.emergency);
    let outputs: Vec<LineClaim> = offsets
        .into_iter()
        .zip(levels)
        .map(|(offset, on)| LineClaim {
            offset,
            direction: Direction::Output(value(on)),
        })
        .collect();
    let lines = chip.claim(&outputs, pins.active_low).map_err(chip_error(
        chip.path(),
        &format!(
            "gate.pins.relay, green, red (lines {}, {}, {})",
            pins.relay, pins.green, pins.red
        ),
    ))?;
    let outputs = LineWriter {
        lines,
        offsets,
        chip: chip.path().to_path_buf(),
    };
    Ok((Box::new(outputs), Box::new(inputs)))
}

/// The two input lines.
struct LineReader<L> {
    lines: L,
    passage_sensor: Offset,
    emergency: Offset,
    chip: PathBuf,
}

impl<L: ClaimedLines> LineReader<L> {
    fn active(&self, offset: Offset, key: &str) -> Result<bool, GateError> {
        self.lines
            .value(offset)
            .map(|v| v == Value::Active)
            .map_err(chip_error(&self.chip, &format!("reading gate.pins.{key}")))
    }
}

impl<L: ClaimedLines> InputReader for LineReader<L> {
    fn read(&mut self) -> Result<Inputs, GateError> {
        Ok(Inputs {
            passage_sensor: self.active(self.passage_sensor, "passage_sensor")?,
            emergency: self.active(self.emergency, "emergency")?,
        })
    }
}

/// The three output lines, in [`Output`] order.
struct LineWriter<L> {
    lines: L,
    offsets: [Offset; 3],
    chip: PathBuf,
}

impl<L: ClaimedLines> OutputWriter for LineWriter<L> {
    fn write(&mut self, output: Output, level: Level, cause: Cause) -> Result<(), GateError> {
        let offset = self.offsets[output.index()];
        self.lines
            .set_value(offset, value(level == Level::On))
            .map_err(chip_error(
                &self.chip,
                &format!("writing {output} (line {offset})"),
            ))?;
        tracing::debug!(%output, ?level, ?cause, "gate output");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::gate::{Backend, EmergencyLamp, Pins};

    /// A line's physical level.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Wire {
        High,
        Low,
    }

    /// The kernel's rule: a logical value under a request's polarity is this level on the wire.
    fn wire_of(value: Value, active_low: bool) -> Wire {
        if (value == Value::Active) != active_low {
            Wire::High
        } else {
            Wire::Low
        }
    }

    fn value_of(wire: Wire, active_low: bool) -> Value {
        value((wire == Wire::High) != active_low)
    }

    /// The wire level of "on" (an output driven, an input triggered) under the polarity.
    fn on(active_low: bool) -> Wire {
        wire_of(Value::Active, active_low)
    }

    fn off(active_low: bool) -> Wire {
        wire_of(Value::Inactive, active_low)
    }

    #[derive(Default)]
    struct Board {
        /// Lines held by a live request: how they were claimed and under which polarity.
        claimed: BTreeMap<Offset, (Direction, bool)>,
        /// What the turnstile drives on an input; an input not here is unconnected.
        driven: BTreeMap<Offset, Wire>,
        /// What each claimed output drives. A released line drives nothing: mainline
        /// pinctrl-bcm2835 (Debian's kernel) turns it back into an input.
        outputs: BTreeMap<Offset, Wire>,
        /// Every request, in order.
        requests: Vec<(Vec<LineClaim>, bool)>,
    }

    /// A chip that behaves as the kernel's at gpiocdev's boundary: a line is held by one request
    /// at a time and released when the request is dropped, an offset past the chip's lines is
    /// refused, values are logical under the request's polarity, and an unconnected input
    /// reads what its bias pulls it to.
    #[derive(Clone)]
    struct FakeChip {
        path: PathBuf,
        lines: Offset,
        board: Arc<Mutex<Board>>,
    }

    impl FakeChip {
        /// A Raspberry Pi 4's gpiochip0 (the BCM2711's 58 lines).
        fn new() -> FakeChip {
            FakeChip {
                path: PathBuf::from("/dev/gpiochip0"),
                lines: 58,
                board: Arc::default(),
            }
        }

        fn drive(&self, pin: u8, wire: Wire) {
            let mut board = self.board.lock().unwrap();
            board.driven.insert(Offset::from(pin), wire);
        }

        fn wire(&self, pin: u8) -> Wire {
            self.driven_by_us(pin)
                .unwrap_or_else(|| panic!("GPIO {pin} is not driven"))
        }

        /// The level an output drives, or none once its line is released.
        fn driven_by_us(&self, pin: u8) -> Option<Wire> {
            self.board
                .lock()
                .unwrap()
                .outputs
                .get(&Offset::from(pin))
                .copied()
        }
    }

    impl Chip for FakeChip {
        type Lines = FakeLines;

        fn path(&self) -> &Path {
            &self.path
        }

        fn claim(
            &self,
            lines: &[LineClaim],
            active_low: bool,
        ) -> Result<FakeLines, gpiocdev::Error> {
            let mut board = self.board.lock().unwrap();
            for line in lines {
                if line.offset >= self.lines {
                    return Err(gpiocdev::Error::InvalidArgument(format!(
                        "offset {} is out of range for a chip of {} lines",
                        line.offset, self.lines
                    )));
                }
                if board.claimed.contains_key(&line.offset) {
                    return Err(gpiocdev::Error::InvalidArgument(format!(
                        "line {} is busy",
                        line.offset
                    )));
                }
            }
            for line in lines {
                board
                    .claimed
                    .insert(line.offset, (line.direction, active_low));
                if let Direction::Output(value) = line.direction {
                    board
                        .outputs
                        .insert(line.offset, wire_of(value, active_low));
                }
            }
            board.requests.push((lines.to_vec(), active_low));
            Ok(FakeLines {
                board: Arc::clone(&self.board),
                offsets: lines.iter().map(|line| line.offset).collect(),
                active_low,
            })
        }
    }

    struct FakeLines {
        board: Arc<Mutex<Board>>,
        offsets: Vec<Offset>,
        active_low: bool,
    }

    impl FakeLines {
        fn held(&self, offset: Offset) -> Result<(), gpiocdev::Error> {
            if self.offsets.contains(&offset) {
                Ok(())
            } else {
                Err(gpiocdev::Error::InvalidArgument(format!(
                    "line {offset} is not in this request"
                )))
            }
        }
    }

    impl ClaimedLines for FakeLines {
        fn value(&self, offset: Offset) -> Result<Value, gpiocdev::Error> {
            self.held(offset)?;
            let board = self.board.lock().unwrap();
            let wire = match board.claimed[&offset].0 {
                Direction::Output(_) => board.outputs[&offset],
                Direction::Input(bias) => match (board.driven.get(&offset), bias) {
                    (Some(&wire), _) => wire,
                    (None, Bias::PullUp) => Wire::High,
                    (None, Bias::PullDown) => Wire::Low,
                    (None, Bias::Disabled) => panic!("line {offset} floats: it reads noise"),
                },
            };
            Ok(value_of(wire, self.active_low))
        }

        fn set_value(&self, offset: Offset, value: Value) -> Result<(), gpiocdev::Error> {
            self.held(offset)?;
            let mut board = self.board.lock().unwrap();
            match board.claimed[&offset].0 {
                Direction::Output(_) => {
                    board
                        .outputs
                        .insert(offset, wire_of(value, self.active_low));
                    Ok(())
                }
                Direction::Input(_) => Err(gpiocdev::Error::InvalidArgument(format!(
                    "line {offset} is an input"
                ))),
            }
        }
    }

    impl Drop for FakeLines {
        fn drop(&mut self) {
            let mut board = self.board.lock().unwrap();
            for offset in &self.offsets {
                board.claimed.remove(offset);
                board.outputs.remove(offset);
            }
        }
    }

    fn config(active_low: bool) -> GateConfig {
        GateConfig {
            backend: Backend::Gpiochip,
            pins: Pins {
                active_low,
                ..Pins::default()
            },
            ..GateConfig::default()
        }
    }

    #[test]
    fn the_inputs_are_claimed_before_the_outputs_which_start_off() {
        for active_low in [false, true] {
            let (chip, config) = (FakeChip::new(), config(active_low));
            let pins = &config.pins;
            let _opened = open_on(&chip, &config).unwrap();
            let requests = chip.board.lock().unwrap().requests.clone();
            let bias = if active_low {
                Bias::PullUp
            } else {
                Bias::PullDown
            };
            let input = |pin: u8| LineClaim {
                offset: Offset::from(pin),
                direction: Direction::Input(bias),
            };
            let output_off = |pin: u8| LineClaim {
                offset: Offset::from(pin),
                direction: Direction::Output(Value::Inactive),
            };
            assert_eq!(
                requests,
                [
                    (
                        vec![input(pins.passage_sensor), input(pins.emergency)],
                        active_low
                    ),
                    (
                        vec![
                            output_off(pins.relay),
                            output_off(pins.green),
                            output_off(pins.red)
                        ],
                        active_low
                    ),
                ],
                "active_low {active_low}"
            );
            for pin in [pins.relay, pins.green, pins.red] {
                assert_eq!(
                    chip.wire(pin),
                    off(active_low),
                    "GPIO {pin}, active_low {active_low}"
                );
            }
        }
    }

    #[test]
    fn an_emergency_input_active_at_start_claims_the_relay_already_open() {
        for (active_low, lamp) in [
            (false, EmergencyLamp::Green),
            (true, EmergencyLamp::Green),
            (true, EmergencyLamp::Off),
        ] {
            let chip = FakeChip::new();
            let config = GateConfig {
                emergency_lamp: lamp,
                ..config(active_low)
            };
            let pins = &config.pins;
            chip.drive(pins.emergency, on(active_low));
            let _opened = open_on(&chip, &config).unwrap();
            // The first level these lines ever drove.
            let requests = chip.board.lock().unwrap().requests.clone();
            let claimed_relay = requests[1].0[0];
            assert_eq!(claimed_relay.direction, Direction::Output(Value::Active));
            assert_eq!(chip.wire(pins.relay), on(active_low));
            let green = if lamp == EmergencyLamp::Green {
                on(active_low)
            } else {
                off(active_low)
            };
            assert_eq!(chip.wire(pins.green), green, "{lamp:?}");
            assert_eq!(chip.wire(pins.red), off(active_low));
        }
    }

    #[test]
    fn unconnected_inputs_read_inactive_and_driven_ones_active_in_either_polarity() {
        for active_low in [false, true] {
            let (chip, config) = (FakeChip::new(), config(active_low));
            let pins = &config.pins;
            let (_outputs, mut inputs) = open_on(&chip, &config).unwrap();
            let nothing = Inputs {
                passage_sensor: false,
                emergency: false,
            };
            assert_eq!(inputs.read().unwrap(), nothing, "active_low {active_low}");
            chip.drive(pins.passage_sensor, on(active_low));
            assert_eq!(
                inputs.read().unwrap(),
                Inputs {
                    passage_sensor: true,
                    emergency: false
                }
            );
            chip.drive(pins.passage_sensor, off(active_low));
            chip.drive(pins.emergency, on(active_low));
            assert_eq!(
                inputs.read().unwrap(),
                Inputs {
                    passage_sensor: false,
                    emergency: true
                }
            );
        }
    }

    #[test]
    fn each_output_drives_its_own_line_in_the_configured_polarity() {
        for active_low in [false, true] {
            let (chip, config) = (FakeChip::new(), config(active_low));
            let pins = &config.pins;
            let (mut outputs, _inputs) = open_on(&chip, &config).unwrap();
            for (output, pin) in [
                (Output::Relay, pins.relay),
                (Output::Green, pins.green),
                (Output::Red, pins.red),
            ] {
                outputs.write(output, Level::On, Cause::Grant).unwrap();
                for other in [pins.relay, pins.green, pins.red] {
                    let expected = if other == pin {
                        on(active_low)
                    } else {
                        off(active_low)
                    };
                    assert_eq!(chip.wire(other), expected, "{output} on: GPIO {other}");
                }
                outputs.write(output, Level::Off, Cause::PulseEnd).unwrap();
                assert_eq!(chip.wire(pin), off(active_low));
            }
        }
    }

    #[test]
    fn the_timing_core_pulses_the_relay_and_green_on_the_chip() {
        let (chip, config) = (FakeChip::new(), config(true));
        let pins = config.pins.clone();
        let mut gate = crate::gate::start(&config, open_on(&chip, &config).unwrap()).unwrap();
        gate.grant().unwrap();
        assert_eq!(chip.wire(pins.relay), Wire::Low, "active-low relay on");
        assert_eq!(chip.wire(pins.green), Wire::Low);
        let deadline = Instant::now() + Duration::from_millis(config.pulse_ms) * 10;
        while chip.wire(pins.relay) != Wire::High {
            assert!(Instant::now() < deadline, "the grant pulse never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            chip.wire(pins.green),
            Wire::High,
            "green ends with the pulse"
        );
        drop(gate);
        assert!(
            chip.board.lock().unwrap().claimed.is_empty(),
            "a stopped gate holds no line"
        );
        // What the turnstile sees once facegated is gone: nothing driven (its relay
        // de-energised), not a level facegated could be asked to keep.
        for pin in [pins.relay, pins.green, pins.red] {
            assert_eq!(chip.driven_by_us(pin), None, "GPIO {pin} after the stop");
        }
    }

    #[test]
    fn a_line_another_process_holds_is_one_error_naming_the_chip_and_lines_and_holds_nothing() {
        let (chip, config) = (FakeChip::new(), config(false));
        let pins = &config.pins;
        let relay = LineClaim {
            offset: Offset::from(pins.relay),
            direction: Direction::Output(Value::Inactive),
        };
        let other_process = chip.claim(&[relay], false).unwrap();
        let err = open_on(&chip, &config)
            .err()
            .expect("the relay is busy")
            .to_string();
        assert_eq!(
            err,
            format!(
                "gate backend gpiochip: /dev/gpiochip0: gate.pins.relay, green, red (lines {}, {}, {}): line {} is busy",
                pins.relay, pins.green, pins.red, pins.relay
            )
        );
        let claimed: Vec<Offset> = chip.board.lock().unwrap().claimed.keys().copied().collect();
        assert_eq!(
            claimed,
            [Offset::from(pins.relay)],
            "the inputs were released"
        );
        drop(other_process);
    }

    #[test]
    fn an_input_line_past_the_chip_is_one_error_naming_it() {
        let chip = FakeChip {
            lines: 16,
            ..FakeChip::new()
        };
        let config = config(false);
        let err = open_on(&chip, &config)
            .err()
            .expect("line 23 of 16")
            .to_string();
        assert!(
            err.starts_with(
                "gate backend gpiochip: /dev/gpiochip0: gate.pins.passage_sensor, emergency (lines 23, 24): offset 23"
            ),
            "{err}"
        );
        assert!(chip.board.lock().unwrap().claimed.is_empty());
    }
}
