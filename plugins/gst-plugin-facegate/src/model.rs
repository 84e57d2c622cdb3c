// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loading model files for elements: where the default lives and how a failure reads on the bus.

use std::path::PathBuf;

use facegate_vision::ModelError;

/// The model path a `model` property names, or the default one when it is unset or empty.
pub fn resolve(property: Option<&str>, default: fn() -> PathBuf) -> PathBuf {
    match property {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => default(),
    }
}

/// The error that fails the state change: one line naming the file and what is wrong with it.
pub fn error_message(error: &ModelError) -> gst::ErrorMessage {
    match error {
        ModelError::Missing { .. } => gst::error_msg!(gst::ResourceError::NotFound, ("{}", error)),
        ModelError::Runtime { .. } => gst::error_msg!(gst::LibraryError::Init, ("{}", error)),
        ModelError::Corrupt { .. } | ModelError::WrongShape { .. } | ModelError::Card { .. } => {
            gst::error_msg!(gst::ResourceError::OpenRead, ("{}", error))
        }
    }
}
