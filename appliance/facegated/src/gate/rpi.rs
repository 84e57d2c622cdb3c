// SPDX-License-Identifier: MIT OR Apache-2.0
//! The Raspberry Pi gate: BCM GPIO pins through rppal, which maps Raspberry Pi OS's
//! `/dev/gpiomem`.
//!
//! rppal is retired upstream (works up to the Pi 5); everything rppal-specific is in this file
//! behind [`OutputWriter`] and [`InputReader`]. On other kernels (Debian's) use `gpiochip`.

use rppal::gpio::{Gpio, InputPin, OutputPin};

use super::{
    Cause, GateConfig, GateError, InputReader, Inputs, Level, Opened, Output, OutputWriter,
    claim_levels,
};

/// Claims the pins of `[gate.pins]`. Off a Raspberry Pi this fails with rppal's own reason
/// ("gate backend rppal: Unknown Raspberry Pi model"). The outputs start at their safe levels;
/// [`super::open`] then writes the safe state through the core as well.
pub(super) fn open(config: &GateConfig) -> Result<Opened, GateError> {
    let pins = &config.pins;
    let gpio = Gpio::new().map_err(GateError::Rppal)?;
    let get = |key: &'static str, pin: u8| {
        gpio.get(pin)
            .map_err(|source| GateError::RppalPin { key, pin, source })
    };
    let active_low = pins.active_low;
    let output = |key, pin, on: bool| -> Result<OutputPin, GateError> {
        let pin = get(key, pin)?;
        // Set the level before switching to output mode: no glitch on the relay.
        let mut out = if on != active_low {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        // Keep the last (safe) level when the process ends instead of falling back to an
        // input, which would let the relay driver float.
        out.set_reset_on_drop(false);
        Ok(out)
    };
    let input = |key, pin| -> Result<InputPin, GateError> {
        let pin = get(key, pin)?;
        // Bias towards "inactive" so an unconnected input reads as not triggered.
        Ok(if active_low {
            pin.into_input_pullup()
        } else {
            pin.into_input_pulldown()
        })
    };
    let mut inputs = PinReader {
        passage_sensor: input("passage_sensor", pins.passage_sensor)?,
        emergency: input("emergency", pins.emergency)?,
        active_low,
    };
    let [relay, green, red] = claim_levels(config, inputs.read()?.emergency);
    let writer = PinWriter {
        relay: output("relay", pins.relay, relay)?,
        green: output("green", pins.green, green)?,
        red: output("red", pins.red, red)?,
        active_low,
    };
    Ok((Box::new(writer), Box::new(inputs)))
}

struct PinReader {
    passage_sensor: InputPin,
    emergency: InputPin,
    active_low: bool,
}

impl InputReader for PinReader {
    fn read(&mut self) -> Result<Inputs, GateError> {
        let active = |pin: &InputPin| pin.is_high() != self.active_low;
        // Reading a memory-mapped GPIO level cannot fail.
        Ok(Inputs {
            passage_sensor: active(&self.passage_sensor),
            emergency: active(&self.emergency),
        })
    }
}

struct PinWriter {
    relay: OutputPin,
    green: OutputPin,
    red: OutputPin,
    active_low: bool,
}

impl OutputWriter for PinWriter {
    fn write(&mut self, output: Output, level: Level, cause: Cause) -> Result<(), GateError> {
        let pin = match output {
            Output::Relay => &mut self.relay,
            Output::Green => &mut self.green,
            Output::Red => &mut self.red,
        };
        // Memory-mapped GPIO writes cannot fail.
        if (level == Level::On) != self.active_low {
            pin.set_high();
        } else {
            pin.set_low();
        }
        tracing::debug!(%output, ?level, ?cause, "gate output");
        Ok(())
    }
}
