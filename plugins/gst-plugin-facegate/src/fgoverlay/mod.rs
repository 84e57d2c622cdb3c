// SPDX-License-Identifier: MIT OR Apache-2.0
//! `fgoverlay`: draws each face region's box, landmarks and caption (name and similarity, track
//! id or detection score) into the frame, for a kiosk screen or debugging.

/**
 * SECTION:element-fgoverlay
 * @title: fgoverlay
 *
 * Marks every face region on the frame: a box (green when the gallery matched the face, amber
 * otherwise), its five landmarks as dots, and a caption with the matched name and similarity
 * ("Анна Каренина 0.71"), else the track id ("#7"), else the detection score ("face 0.93").
 *
 * Boxes and landmarks are drawn into the frame. Captions are laid out with Pango, so names in
 * any script render (Cyrillic, Greek, Arabic joined and right-to-left, Chinese and Japanese with
 * a CJK font installed), into ARGB overlay rectangles that are cached per caption text. When
 * downstream negotiates `meta:GstVideoOverlayComposition` and lists the meta in its allocation
 * answer, the captions travel as a #GstVideoOverlayCompositionMeta for the sink to draw;
 * otherwise they are blended into the frame.
 *
 * ## Example launch line
 *
 * ```shell
 * gst-launch-1.0 v4l2src ! video/x-raw,width=640,height=480 \
 *     ! fgdetect ! fgtrack ! fgembed ! fgmatch gallery=/var/lib/facegate/gallery \
 *     ! fgoverlay text-scale=3 ! videoconvert ! autovideosink
 * ```
 */
use gst::glib;

mod caption;
mod imp;
mod marks;

glib::wrapper! {
    pub struct FaceOverlay(ObjectSubclass<imp::FaceOverlay>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceOverlay>(plugin, "fgoverlay")
}
