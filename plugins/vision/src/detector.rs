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
/// Landmarks found again at full resolution, by default (see [`DetectorConfig::refine_landmarks`]).
pub const DEFAULT_REFINE_LANDMARKS: bool = false;

/// The refinement pass looks at a square this many times the face's size around it...
const REFINE_CONTEXT: f32 = 2.0;
/// ...scaled so that its side is at most this many network pixels (the face then about half of
/// it, a size YuNet places landmarks well at), and never enlarged.
const REFINE_INPUT: f32 = 256.0;
/// Refinement runs only where it sees the face at least this much larger than the first pass did.
const REFINE_MIN_GAIN: f32 = 1.25;
/// The refined face must overlap the first pass's this much to replace it.
const REFINE_MIN_IOU: f32 = 0.5;

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
    /// When the frame was scaled down for the network, detect each face again in a crop of the
    /// frame around it at up to full resolution, and take the landmarks (and box) from there:
    /// alignment, and so the embedding, follow the landmarks' precision.
    pub refine_landmarks: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            score_threshold: DEFAULT_SCORE_THRESHOLD as f32,
            nms_threshold: DEFAULT_NMS_THRESHOLD as f32,
            input_size: DEFAULT_INPUT_SIZE,
            max_faces: DEFAULT_MAX_FACES,
            refine_landmarks: DEFAULT_REFINE_LANDMARKS,
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
    /// The refinement pass's input, sized per face.
    refine_input: Vec<f32>,
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
            refine_input: Vec::new(),
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
        plan.fill_bgr_planar(frame, &mut self.input);
        let mut pass = Pass {
            session: &mut self.session,
            path: &self.path,
            candidates: &mut self.candidates,
        };
        pass.run(plan, &self.input, config)?;
        faces.extend(
            self.candidates
                .iter()
                .map(|f| f.mapped(|p| plan.to_frame(p))),
        );
        if config.refine_landmarks && self.fixed_input.is_none() {
            let first_scale = 1.0 / plan.inverse_scale();
            for face in faces.iter_mut() {
                self.refine(frame, face, first_scale, config)?;
            }
        }
        Ok(())
    }

    /// Detects `face` again in a crop of `frame` around it, seen larger than at `first_scale`
    /// (network pixels per frame pixel), and takes the box and landmarks found there.
    fn refine(
        &mut self,
        frame: &Frame,
        face: &mut Face,
        first_scale: f32,
        config: &DetectorConfig,
    ) -> Result<(), InferenceError> {
        let side = REFINE_CONTEXT * face.bbox.w.max(face.bbox.h);
        let scale = (REFINE_INPUT / side).min(1.0);
        if scale < first_scale * REFINE_MIN_GAIN {
            return Ok(());
        }
        let (cx, cy) = face.bbox.centre();
        let (width, height) = (frame.width() as f32, frame.height() as f32);
        let x0 = (cx - side / 2.0).clamp(0.0, width - 1.0).floor();
        let y0 = (cy - side / 2.0).clamp(0.0, height - 1.0).floor();
        let x1 = (cx + side / 2.0).clamp(x0 + 1.0, width).ceil();
        let y1 = (cy + side / 2.0).clamp(y0 + 1.0, height).ceil();
        let plan = Letterbox::region(
            (x0 as usize, y0 as usize),
            (x1 - x0) as usize,
            (y1 - y0) as usize,
            f64::from(scale),
        );
        self.refine_input.clear();
        self.refine_input.resize(plan.tensor_len(), 0.0);
        plan.fill_bgr_planar(frame, &mut self.refine_input);
        let mut pass = Pass {
            session: &mut self.session,
            path: &self.path,
            candidates: &mut self.candidates,
        };
        pass.run(&plan, &self.refine_input, config)?;
        let best = self
            .candidates
            .iter()
            .map(|c| c.mapped(|p| plan.to_frame(p)))
            .map(|c| (c.bbox.iou(&face.bbox), c))
            .filter(|(iou, _)| *iou >= REFINE_MIN_IOU)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, refined)) = best {
            // The first pass's score decided that this is a face; keep it, so that refining
            // never changes which faces are reported.
            *face = Face {
                score: face.score,
                ..refined
            };
        }
        Ok(())
    }
}

/// One network run over a prepared input: decode every stride, suppress overlaps.
struct Pass<'a> {
    session: &'a mut Session,
    path: &'a Path,
    candidates: &'a mut Vec<Face>,
}

impl Pass<'_> {
    /// Fills `candidates` with the faces `plan`'s `input` shows, in network pixels, best first.
    fn run(
        &mut self,
        plan: &Letterbox,
        input: &[f32],
        config: &DetectorConfig,
    ) -> Result<(), InferenceError> {
        let (net_width, net_height) = plan.net_size();
        let failure = |reason: String| InferenceError {
            model: self.path.to_path_buf(),
            reason,
        };
        let tensor = TensorRef::from_array_view(([1usize, 3, net_height, net_width], input))
            .map_err(|e| failure(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => tensor])
            .map_err(|e| failure(e.to_string()))?;
        self.candidates.clear();
        for (stride, names) in STRIDES.iter().zip(OUTPUT_NAMES) {
            let mut views: [&[f32]; 4] = [&[]; 4];
            for (view, name) in views.iter_mut().zip(names) {
                let (_, data) = outputs[name]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| failure(format!("{name}: {e}")))?;
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
                self.candidates,
            );
            if short > 0 {
                return Err(failure(format!(
                    "stride {stride} outputs are {short} cells short for a {net_width}x{net_height} input"
                )));
            }
        }
        non_max_suppression(self.candidates, config.nms_threshold, config.max_faces);
        Ok(())
    }
}
