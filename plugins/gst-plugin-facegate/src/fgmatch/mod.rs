// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fgmatch
 * @see_also: fgembed, fgoverlay
 *
 * `fgmatch` searches the gallery (a directory made by `facegatectl enroll`) for each face's
 * `facegate-embedding` and, when the best candidate's cosine similarity reaches the threshold and
 * beats the best other identity by `min-margin`, attaches a `facegate-match` param (id, label, similarity, generation) and posts a
 * `facegate-match` element message with the face's box, track id and timestamps; with `top-k`
 * above 1 the message also lists the runners-up. With `post-frames=true` it also posts one
 * `facegate-frame` message per frame listing every embedded face, matched or not, with its best
 * candidate: the gate service decides from those.
 *
 * The threshold follows the gallery's size: a stranger is compared with everyone enrolled, so the
 * more people, the likelier a false match. By default (`threshold` negative) it is the larger of
 * `min-threshold` and the threshold the embedder's calibration gives for the gallery's size at
 * `max-false-grant-rate` false grants per stranger passage, recomputed at every generation and
 * readable as `effective-threshold`. Calibrations are `<model>.toml` files in
 * `$FACEGATE_CALIBRATION_DIR` (else /usr/share/facegate/calibration), made by
 * `facegatectl evaluate --write-calibration`; a gallery whose model has none is refused at start
 * unless `threshold` is set, which overrides the calibration.
 *
 * A new gallery generation is loaded in the background (checked every `poll-interval` ms, or at
 * once when the `reload` action signal is emitted) and switched to between frames; a broken one is
 * reported as a warning and the last good one stays in use. Embeddings of another model or dimension than the gallery's are a stream error.
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert \
 *     ! fgdetect model=/usr/share/facegate/models/facegate_yunet_2023mar.onnx ! fgtrack ! queue \
 *     ! fgembed model=/usr/share/facegate/models/facegate_sface_2021dec.onnx \
 *     ! fgmatch gallery=/var/lib/facegate/gallery \
 *     ! fgoverlay ! videoconvert ! autovideosink
 * ]| Shows the camera with each face's box and, for enrolled passengers, their name.
 *
 * |[
 * gst-launch-1.0 -m filesrc location=walkup.avi ! decodebin ! videoconvert \
 *     ! fgdetect ! fgtrack ! fgembed ! fgmatch gallery=/var/lib/facegate/gallery post-frames=true \
 *     ! fakesink
 * ]| Prints the facegate-match and facegate-frame messages of a recording (models from
 * `$FACEGATE_MODEL_DIR`, or /usr/share/facegate/models).
 */
use gst::glib;

mod imp;
mod tokens;

glib::wrapper! {
    pub struct FaceMatch(ObjectSubclass<imp::FaceMatch>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceMatch>(plugin, "fgmatch")
}
