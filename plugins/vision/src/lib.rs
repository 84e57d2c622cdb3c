// SPDX-License-Identifier: MIT OR Apache-2.0
//! FaceGate's vision core, free of GStreamer so that it can be unit-tested on plain buffers:
//! reading camera frames, detecting faces (YuNet), tracking them, aligning and embedding them
//! (SFace), searching the gallery (FAISS), and telling a live face from a photo of one
//! (liveness).

pub mod align;
pub mod calibration;
pub mod canvas;
pub mod detector;
pub mod embedder;
pub mod embedding_cache;
pub mod frame;
pub mod fusion;
pub mod gallery;
pub mod gallery_watch;
pub mod geometry;
pub mod letterbox;
pub mod liveness;
pub mod match_rule;
pub mod model_card;
pub mod open_set;
pub mod qr;
pub mod runtime;
pub mod template;
pub mod tracker;
pub mod yunet;

pub use detector::{Detector, DetectorConfig};
pub use embedder::{Embedder, cosine};
pub use frame::{ChromaSiting, Frame, PixelFormat, YuvMatrix};
pub use geometry::{Face, Rect};
pub use runtime::ModelError;
