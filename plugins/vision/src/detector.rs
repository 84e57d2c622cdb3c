// SPDX-License-Identifier: MIT OR Apache-2.0
//! The YuNet face detector on ONNX Runtime: letterbox, infer, decode, suppress, map back.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use crate::frame::Frame;
use crate::geometry::{Face, non_max_suppression};
use crate::letterbox::Letterbox;
use crate::runtime::{
    InferenceError, ModelError, expect_io, input_dims, model_identity, open_session,
};
use crate::yunet::{OUTPUT_NAMES, STRIDES, StrideOutputs, decode_stride};

/// Minimum face score by default, 0..1 (OpenCV's FaceDetectorYN uses the same).
pub const DEFAULT_SCORE_THRESHOLD: f64 = 0.6;
/// Overlap above which the weaker of two faces is dropped, by default.
pub const DEFAULT_NMS_THRESHOLD: f64 = 0.3;
/// Chosen by measurement (docs/BENCHMARKS.md): at 320 a face of a passenger at the gate is still
/// found with OpenCV-equal boxes, at a quarter of the cost of 640. Enrolment photos use 640.
pub const DEFAULT_INPUT_SIZE: usize = 320;
/// Faces kept per frame by default.
pub const DEFAULT_MAX_FACES: usize = 16;

/// Tuning of one detection pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Minimum face score, 0..1.
    pub score_threshold: f32,
    /// Overlap above which the weaker of two faces is dropped.
    pub nms_threshold: f32,
    /// Longer side of the network input in pixels.
    pub input_size: usize,
    pub max_faces: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            score_threshold: DEFAULT_SCORE_THRESHOLD as f32,
            nms_threshold: DEFAULT_NMS_THRESHOLD as f32,
            input_size: DEFAULT_INPUT_SIZE,
            max_faces: DEFAULT_MAX_FACES,
        }
    }
}

pub struct Detector {
    session: Session,
    path: PathBuf,
    identity: String,
    /// Side fixed by the model file, if it is not dynamic.
    fixed_input: Option<(usize, usize)>,
    letterbox: Option<Letterbox>,
    input: Vec<f32>,
    candidates: Vec<Face>,
}

impl Detector {
    pub fn load(path: &Path, threads: usize) -> Result<Self, ModelError> {
        let session = open_session(path, threads)?;
        let outputs: Vec<&str> = OUTPUT_NAMES.iter().flatten().copied().collect();
        expect_io(&session, path, "input", &outputs)?;
        let dims = input_dims(&session);
        if dims.len() != 4 || dims[1] != 3 {
            return Err(ModelError::WrongShape {
                path: path.to_path_buf(),
                reason: format!("input `input` should be [1, 3, H, W], found {dims:?}"),
            });
        }
        let fixed_input =
            (dims[2] > 0 && dims[3] > 0).then(|| (dims[3] as usize, dims[2] as usize));
        Ok(Detector {
            session,
            path: path.to_path_buf(),
            identity: model_identity(path)?,
            fixed_input,
            letterbox: None,
            input: Vec::new(),
            candidates: Vec::with_capacity(64),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identity of the model ("file-stem@sha256:…"), as recorded in each detection.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The input the model accepts: sizes that a fixed-shape export cannot take are refused here,
    /// naming the size it was exported for.
    pub fn check_input_size(&self, input_size: usize) -> Result<(), ModelError> {
        match self.fixed_input {
            Some((w, h)) if w != input_size || h != input_size => Err(ModelError::WrongShape {
                path: self.path.clone(),
                reason: format!(
                    "its input is fixed at {w}x{h}, so input-size {input_size} cannot work; use the dynamic-size model made by scripts/prepare-models.py"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Detects faces in `frame`, replacing the contents of `faces` (frame pixel coordinates, best first).
    pub fn detect(
        &mut self,
        frame: &Frame,
        config: &DetectorConfig,
        faces: &mut Vec<Face>,
    ) -> Result<(), InferenceError> {
        faces.clear();
        let input_size = self.fixed_input.map_or(config.input_size, |(w, _)| w);
        let plan_fits = self
            .letterbox
            .as_ref()
            .is_some_and(|p| p.fits(frame.width(), frame.height(), input_size));
        if !plan_fits {
            let plan = match self.fixed_input {
                Some((w, h)) => Letterbox::fixed(frame.width(), frame.height(), w, h),
                None => Letterbox::new(frame.width(), frame.height(), input_size),
            };
            self.input.clear();
            self.input.resize(plan.tensor_len(), 0.0);
            self.letterbox = Some(plan);
        }
        let Some(plan) = self.letterbox.as_ref() else {
            return Ok(());
        };
        let (net_width, net_height) = plan.net_size();
        plan.fill_bgr_planar(frame, &mut self.input);
        let failure = |reason: String| InferenceError {
            model: self.path.clone(),
            reason,
        };
        let tensor =
            TensorRef::from_array_view(([1usize, 3, net_height, net_width], &self.input[..]))
                .map_err(|e| failure(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => tensor])
            .map_err(|e| failure(e.to_string()))?;
        self.candidates.clear();
        for (stride, names) in STRIDES.iter().zip(OUTPUT_NAMES) {
            let mut views: [&[f32]; 4] = [&[]; 4];
            for (view, name) in views.iter_mut().zip(names) {
                let (_, data) =
                    outputs[name]
                        .try_extract_tensor::<f32>()
                        .map_err(|e| InferenceError {
                            model: self.path.clone(),
                            reason: format!("{name}: {e}"),
                        })?;
                *view = data;
            }
            let [cls, obj, bbox, kps] = views;
            let stride_outputs = StrideOutputs {
                stride: *stride,
                cls,
                obj,
                bbox,
                kps,
            };
            let short = decode_stride(
                &stride_outputs,
                net_width,
                net_height,
                config.score_threshold,
                &mut self.candidates,
            );
            if short > 0 {
                return Err(InferenceError {
                    model: self.path.clone(),
                    reason: format!(
                        "stride {stride} outputs are {short} cells short for a {net_width}x{net_height} input"
                    ),
                });
            }
        }
        non_max_suppression(&mut self.candidates, config.nms_threshold, config.max_faces);
        let back = plan.inverse_scale();
        faces.extend(self.candidates.iter().map(|f| f.scaled(back)));
        Ok(())
    }
}
