// SPDX-License-Identifier: MIT OR Apache-2.0
//! The simulated gate: the shared timing core, writing each output change as one JSON line
//! (flushed and fsync'd) to `gate.actions_log` instead of driving pins, and reading its inputs
//! from `gate.simulated_inputs` instead of pins (tests script the passage sensor and the
//! emergency contact by replacing that file).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{
    Action, Cause, GateConfig, GateError, InputReader, Inputs, Level, Opened, Output, OutputWriter,
};

/// A gate without hardware: opens (creates or appends to) the action log; outputs are not
/// written yet ([`super::open`] puts the gate in its safe state). See [`super::read_actions`]
/// for its log.
pub(super) fn open(config: &GateConfig) -> Result<Opened, GateError> {
    let writer = LogWriter::open(&config.actions_log)?;
    let inputs = InputsFile {
        path: config.simulated_inputs.clone(),
    };
    Ok((Box::new(writer), Box::new(inputs)))
}

/// The inputs file; no file is an unconnected (inactive) pair of inputs.
struct InputsFile {
    path: PathBuf,
}

impl InputReader for InputsFile {
    fn read(&mut self) -> Result<Inputs, GateError> {
        read_inputs(&self.path)
    }
}

fn read_inputs(path: &Path) -> Result<Inputs, GateError> {
    let error = |reason: String| GateError::InputsFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            error(format!(
                "{e} (expected {{\"passage_sensor\": bool, \"emergency\": bool}})"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Inputs::default()),
        Err(e) => Err(error(e.to_string())),
    }
}

struct LogWriter {
    path: PathBuf,
    file: File,
}

impl LogWriter {
    fn open(path: &Path) -> Result<LogWriter, GateError> {
        let err = |source| GateError::ActionsLog {
            path: path.to_path_buf(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        if !existed {
            // Make the new file's directory entry durable too.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl OutputWriter for LogWriter {
    fn write(&mut self, output: Output, level: Level, cause: Cause) -> Result<(), GateError> {
        let mut line = serde_json::to_vec(&Action::now(output, level, cause))
            .expect("an action always serialises");
        line.push(b'\n');
        // One write per line (O_APPEND), then to disk before the call returns.
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| GateError::ActionsLog {
                path: self.path.clone(),
                source,
            })
    }
}
