//! `fgembed`: aligns each face from its landmarks and attaches a unit-length SFace embedding;
//! tracked faces are embedded once and refreshed rarely.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FaceEmbed(ObjectSubclass<imp::FaceEmbed>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fgembed",
        gst::Rank::NONE,
        FaceEmbed::static_type(),
    )
}
