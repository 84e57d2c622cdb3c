// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fgembed
 * @see_also: fgdetect, fgtrack, fgmatch
 *
 * `fgembed` aligns each face region on its five `facegate-detection` landmarks and attaches a
 * unit-length embedding as a `facegate-embedding` param (model, dim, data). The model is SFace by
 * default; any ONNX face embedder with a model card beside it (`<stem>.card.toml`: tensor names,
 * input size, colour order, normalisation, output dimension, licence) works the same way, and one
 * whose licence forbids commercial use posts a warning on the bus when it starts. A tracked face
 * (behind fgtrack) is embedded once and again every `refresh-interval` frames, or sooner when it
 * has grown by 30%; untracked faces are embedded on every frame. A tracked face carries its
 * track's fused embedding: the quality-weighted mean of up to `fusion-frames` of its best
 * embeddings (eye distance, how frontal, how sharp against the track's sharpest), so one turned
 * or blurred frame does not decide; an embedding unlike the track's evidence (another person
 * under the same track) starts it again. `faces-embedded` counts the model's runs.
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert \
 *     ! fgdetect model=/usr/share/facegate/models/facegate_yunet_2023mar.onnx ! fgtrack ! queue \
 *     ! fgembed model=/usr/share/facegate/models/facegate_sface_2021dec.onnx refresh-interval=15 \
 *     ! fgmetadump embeddings=true ! fakesink
 * ]| Prints each frame's faces with their embeddings as JSON lines.
 */
use gst::glib;

mod imp;

glib::wrapper! {
    pub struct FaceEmbed(ObjectSubclass<imp::FaceEmbed>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceEmbed>(plugin, "fgembed")
}
