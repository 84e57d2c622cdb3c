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
//! triggered. When the process ends the kernel releases the lines; the pin controllers of the
//! Raspberry Pi keep the last level driven, as with rppal, and the unit's `ExecStopPost=` writes
//! the safe state again.

use std::path::{Path, PathBuf};

use gpiocdev::Request;
use gpiocdev::line::{Bias, Offset, Value};

use super::{
    Cause, GateConfig, GateError, InputReader, Inputs, Level, Opened, Output, OutputWriter,
    claim_levels,
};

/// What facegated's lines are labelled with in `gpioinfo`.
const CONSUMER: &str = "facegated";

/// The two input lines.
struct LineReader {
    lines: Request,
    passage_sensor: Offset,
    emergency: Offset,
    chip: PathBuf,
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
    let pins = &config.pins;
    let chip = config.chip.as_path();
    // The inputs first: the outputs are claimed at levels that follow the emergency input.
    let (passage_sensor, emergency) = (
        Offset::from(pins.passage_sensor),
        Offset::from(pins.emergency),
    );
    let mut request = Request::builder();
    request
        .on_chip(chip)
        .with_consumer(CONSUMER)
        .with_lines(&[passage_sensor, emergency])
        .as_input();
    if pins.active_low {
        request.as_active_low().with_bias(Bias::PullUp);
    } else {
        request.with_bias(Bias::PullDown);
    }
    let lines = request.request().map_err(chip_error(
        chip,
        &format!(
            "gate.pins.passage_sensor, emergency (lines {}, {})",
            pins.passage_sensor, pins.emergency
        ),
    ))?;
    let mut inputs = LineReader {
        lines,
        passage_sensor,
        emergency,
        chip: chip.to_path_buf(),
    };

    let offsets = [pins.relay, pins.green, pins.red].map(Offset::from);
    let levels = claim_levels(config, inputs.read()?.emergency);
    let mut request = Request::builder();
    request.on_chip(chip).with_consumer(CONSUMER);
    for (offset, on) in offsets.into_iter().zip(levels) {
        // Each setting applies to the line just selected.
        request.with_line(offset).as_output(value(on));
        if pins.active_low {
            request.as_active_low();
        }
    }
    let lines = request.request().map_err(chip_error(
        chip,
        &format!(
            "gate.pins.relay, green, red (lines {}, {}, {})",
            pins.relay, pins.green, pins.red
        ),
    ))?;
    Ok((Box::new(LineWriter { lines, offsets }), Box::new(inputs)))
}

impl LineReader {
    fn active(&self, offset: Offset, key: &str) -> Result<bool, GateError> {
        self.lines
            .value(offset)
            .map(|v| v == Value::Active)
            .map_err(chip_error(&self.chip, &format!("reading gate.pins.{key}")))
    }
}

impl InputReader for LineReader {
    fn read(&mut self) -> Result<Inputs, GateError> {
        Ok(Inputs {
            passage_sensor: self.active(self.passage_sensor, "passage_sensor")?,
            emergency: self.active(self.emergency, "emergency")?,
        })
    }
}

/// The three output lines, in [`Output`] order.
struct LineWriter {
    lines: Request,
    offsets: [Offset; 3],
}

impl OutputWriter for LineWriter {
    fn write(&mut self, output: Output, level: Level, cause: Cause) -> Result<(), GateError> {
        let offset = self.offsets[output.index()];
        self.lines
            .set_value(offset, value(level == Level::On))
            .map_err(chip_error(
                &self.lines.chip_path(),
                &format!("writing {output} (line {offset})"),
            ))?;
        tracing::debug!(%output, ?level, ?cause, "gate output");
        Ok(())
    }
}
