// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fgtrack
 * @see_also: fgdetect, fgembed
 *
 * `fgtrack` gives each face region a track id that stays the same while the face moves across
 * frames (box overlap first, then centre distance), adding a `facegate-track` param (id, age in
 * frames). A track survives `max-age` frames without its face before its id is retired. Ids
 * restart from 1 with a new stream or a flushing seek. Downstream, fgembed embeds a tracked face
 * once and refreshes it rarely, and the gate service decides per track.
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert \
 *     ! fgdetect model=/usr/share/facegate/models/facegate_yunet_2023mar.onnx \
 *     ! fgtrack max-age=15 iou-threshold=0.3 ! fgmetadump ! fakesink
 * ]| Prints each frame's faces with their track ids (`track_id`) as JSON lines.
 */
use gst::glib;

mod imp;

glib::wrapper! {
    pub struct FaceTrack(ObjectSubclass<imp::FaceTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceTrack>(plugin, "fgtrack")
}
