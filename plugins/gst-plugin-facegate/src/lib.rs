// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `facegate` GStreamer plugin: face detection, tracking, presentation-attack detection,
//! embedding and gallery matching inline in a video pipeline, a QR code reader for passenger
//! tokens, plus an overlay and a metadata dump.
//!
//! The elements are thin adapters around `facegate-vision`; results travel on each buffer as the
//! face metadata contract of `facegate-meta`. The vision library's `tracing` events go to the
//! GStreamer debug category `fgvision` ([`log`]).
#![allow(clippy::non_send_fields_in_send_ty)]

use gst::glib;

mod fgdetect;
mod fgembed;
mod fglive;
mod fgmatch;
mod fgmetadump;
mod fgoverlay;
mod fgqr;
mod fgtrack;
pub mod log;
mod model;
pub mod video;

// The elements as types, for applications that build pipelines in code.
pub use fgdetect::FaceDetect;
pub use fgembed::FaceEmbed;
pub use fglive::FaceLive;
pub use fgmatch::FaceMatch;
pub use fgmetadump::FaceMetaDump;
pub use fgoverlay::FaceOverlay;
pub use fgqr::QrRead;
pub use fgtrack::FaceTrack;
pub use log::GstDebugLayer;

/// Registers element type `T` under `name`, at no rank (our elements are never auto-plugged).
fn register_element<T: glib::types::StaticType>(
    plugin: &gst::Plugin,
    name: &str,
) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), name, gst::Rank::NONE, T::static_type())
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    log::install_unless_set();
    fgdetect::register(plugin)?;
    fgtrack::register(plugin)?;
    fgembed::register(plugin)?;
    fglive::register(plugin)?;
    fgmatch::register(plugin)?;
    fgoverlay::register(plugin)?;
    fgmetadump::register(plugin)?;
    fgqr::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    facegate,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
