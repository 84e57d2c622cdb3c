//! `fgmetadump`: a pass-through that writes each frame's face records as one JSON line.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FaceMetaDump(ObjectSubclass<imp::FaceMetaDump>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fgmetadump",
        gst::Rank::NONE,
        FaceMetaDump::static_type(),
    )
}
