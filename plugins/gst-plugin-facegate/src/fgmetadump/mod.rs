// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fgmetadump
 * @see_also: fgdetect, fgmatch
 *
 * `fgmetadump` passes video through untouched and writes each frame's face regions as one JSON
 * line to `location` (a file, created or truncated, or `-` for standard output), flushed per
 * frame: `{"pts_ns", "width", "height", "faces": [{"bbox", "score", "landmarks", "track_id",
 * "match"}]}`, with each face's `embedding` too when `embeddings=true`. Malformed face metadata
 * is a stream error.
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 filesrc location=walkup.avi ! decodebin ! videoconvert \
 *     ! fgdetect ! fgtrack ! fgembed ! fgmatch gallery=/var/lib/facegate/gallery \
 *     ! fgmetadump location=faces.jsonl ! fakesink
 * ]| Writes what the gate saw in a recording to faces.jsonl, one line per frame.
 */
use gst::glib;

mod imp;

glib::wrapper! {
    pub struct FaceMetaDump(ObjectSubclass<imp::FaceMetaDump>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceMetaDump>(plugin, "fgmetadump")
}
