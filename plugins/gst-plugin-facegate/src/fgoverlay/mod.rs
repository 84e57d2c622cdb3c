//! `fgoverlay`: draws each face region's box, landmarks and caption (name and similarity, track
//! id or detection score) into the frame, for a kiosk screen or debugging.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FaceOverlay(ObjectSubclass<imp::FaceOverlay>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fgoverlay",
        gst::Rank::NONE,
        FaceOverlay::static_type(),
    )
}
