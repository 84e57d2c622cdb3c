// SPDX-License-Identifier: MIT OR Apache-2.0
//! Finding ONNX Runtime and the model files, and opening sessions with errors that name the file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use thiserror::Error;

/// Environment variable naming the ONNX Runtime shared library (an absolute path).
pub const ORT_LIBRARY_ENV: &str = "ORT_DYLIB_PATH";
/// Environment variable naming the directory the default model files are read from.
pub const MODEL_DIR_ENV: &str = "FACEGATE_MODEL_DIR";
/// Where the appliance image installs ONNX Runtime and the models.
pub const SYSTEM_ORT_LIBRARY: &str = "/usr/lib/facegate/libonnxruntime.so";
pub const SYSTEM_MODEL_DIR: &str = "/usr/share/facegate/models";
/// The default, commercially usable model set (see models/manifest.toml).
pub const DEFAULT_DETECTOR_FILE: &str = "facegate_yunet_2023mar.onnx";
pub const DEFAULT_EMBEDDER_FILE: &str = "facegate_sface_2021dec.onnx";

const SETUP_HINT: &str = "run `make setup` (scripts/setup.sh) to fetch it";

#[derive(Debug, Error, Clone)]
pub enum ModelError {
    #[error(
        "ONNX Runtime library {path}: {reason}; set {ORT_LIBRARY_ENV} to libonnxruntime.so 1.32 or {SETUP_HINT}"
    )]
    Runtime { path: PathBuf, reason: String },
    #[error("model file {path} does not exist; {SETUP_HINT} or set the element's model property")]
    Missing { path: PathBuf },
    #[error("model file {path} could not be loaded: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("model file {path} is not the expected kind of model: {reason}")]
    WrongShape { path: PathBuf, reason: String },
    #[error("model card {path}: {reason}")]
    Card { path: PathBuf, reason: String },
}

/// A failure while running a model on one frame or face.
#[derive(Debug, Error)]
#[error("inference with {model} failed: {reason}")]
pub struct InferenceError {
    pub model: PathBuf,
    pub reason: String,
}

/// The directory default models are read from: `$FACEGATE_MODEL_DIR` or the appliance's system directory.
pub fn default_model_dir() -> PathBuf {
    std::env::var_os(MODEL_DIR_ENV).map_or_else(|| PathBuf::from(SYSTEM_MODEL_DIR), PathBuf::from)
}

pub fn default_detector_path() -> PathBuf {
    default_model_dir().join(DEFAULT_DETECTOR_FILE)
}

pub fn default_embedder_path() -> PathBuf {
    default_model_dir().join(DEFAULT_EMBEDDER_FILE)
}

fn runtime_library_path() -> PathBuf {
    std::env::var_os(ORT_LIBRARY_ENV)
        .map_or_else(|| PathBuf::from(SYSTEM_ORT_LIBRARY), PathBuf::from)
}

/// The process-wide ONNX Runtime environment, loaded once from `$ORT_DYLIB_PATH`.
///
/// A failed load is remembered too: the library cannot be swapped within a process anyway.
pub fn environment() -> Result<Environment, ModelError> {
    static ENVIRONMENT: OnceLock<Result<Environment, ModelError>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = runtime_library_path();
            if !path.is_file() {
                return Err(ModelError::Runtime {
                    path,
                    reason: "no such file".into(),
                });
            }
            let builder = ort::init_from(&path).map_err(|e| ModelError::Runtime {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder
                .with_name("facegate")
                .build()
                .map_err(|e| ModelError::Runtime {
                    path,
                    reason: e.to_string(),
                })
        })
        .clone()
}

/// Opens an ONNX model for inference on `threads` intra-op threads (0 lets ONNX Runtime choose).
pub fn open_session(path: &Path, threads: usize) -> Result<Session, ModelError> {
    let environment = environment()?;
    if !path.is_file() {
        return Err(ModelError::Missing {
            path: path.to_path_buf(),
        });
    }
    let corrupt = |reason: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut builder = Session::builder(&environment)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .and_then(|b| Ok(b.with_inter_threads(1)?))
        // A gate runs two sessions (detector, embedder) one after the other on the streaming
        // thread, beside the decoder and the service: pool threads that spin after their run
        // take the cores the next session needs. Without spinning, detect + embed took 26-31 ms
        // instead of 73-83 ms on a loaded two-core machine (docs/BENCHMARKS.md).
        .and_then(|b| Ok(b.with_intra_op_spinning(false)?))
        .map_err(|e| corrupt(e.to_string()))?;
    builder
        .commit_from_file(path)
        .map_err(|e| corrupt(one_line(&e.to_string())))
}

/// ONNX Runtime's messages can span lines; operators read them in one journal line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks that a session has an input and outputs of the given names, so that a model of
/// another kind fails at load time rather than on the first frame.
pub fn expect_io(
    session: &Session,
    path: &Path,
    input: &str,
    outputs: &[&str],
) -> Result<(), ModelError> {
    let wrong = |reason: String| ModelError::WrongShape {
        path: path.to_path_buf(),
        reason,
    };
    let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    if inputs != [input] {
        return Err(wrong(format!(
            "expected one input `{input}`, found {inputs:?}"
        )));
    }
    let have: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if let Some(missing) = outputs.iter().find(|o| !have.contains(o)) {
        return Err(wrong(format!(
            "expected an output `{missing}`, found {have:?}"
        )));
    }
    Ok(())
}

/// Dimensions of a session's only input (-1 for dynamic ones).
pub fn input_dims(session: &Session) -> Vec<i64> {
    session
        .inputs()
        .first()
        .and_then(|o| o.dtype().tensor_shape())
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

/// The sha256 of a model file, in hex.
pub fn model_sha256(path: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A model's identity, "file-stem@sha256:<first 16 hex digits>": names it in metadata and
/// ties a gallery to the exact weights that made its embeddings.
pub fn model_identity(path: &Path) -> Result<String, ModelError> {
    Ok(identity_of(path, &model_sha256(path)?))
}

/// The identity of the model at `path` whose sha256 is `sha256` (hex).
pub fn identity_of(path: &Path, sha256: &str) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    format!("{stem}@sha256:{}", &sha256[..16.min(sha256.len())])
}
