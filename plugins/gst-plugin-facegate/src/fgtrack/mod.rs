//! `fgtrack`: gives each face a stable track id across frames.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FaceTrack(ObjectSubclass<imp::FaceTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fgtrack",
        gst::Rank::NONE,
        FaceTrack::static_type(),
    )
}
