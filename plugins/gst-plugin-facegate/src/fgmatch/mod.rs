//! `fgmatch`: searches the gallery for each embedded face, attaches identity and similarity, and
//! posts a `facegate-match` element message per matched face.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FaceMatch(ObjectSubclass<imp::FaceMatch>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fgmatch",
        gst::Rank::NONE,
        FaceMatch::static_type(),
    )
}
