// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fglive
 * @see_also: fgtrack, fgmatch
 *
 * `fglive` tells a live face from a presentation attack (a photo of an enrolled passenger shown
 * on a phone or on paper) and attaches its verdict to each tracked face as a
 * `facegate-liveness` param: `verdict` (`live`, `attack` or `undecided`), `score` (0..1, 1 =
 * surely live) and `cue` (what decided). It runs after fgtrack: the verdict is a track's, built
 * over its frames. fgmatch passes it to the gate service in its frame messages, and the service
 * denies an `attack` "presentation-attack" and grants nobody before they are `live`.
 *
 * The cues need no model. On by default: a device's bezel around the face, moire from a
 * screen's pixel grid, glare on glass (`screen`), a sheet's unprinted margin with straight
 * edges on two sides of the face (`paper-margin`), and whether the five landmarks move as one
 * plane (`motion`). Off by default: paper grain against a print's contrast (`print`), which a
 * gate camera rarely resolves and which live faces trip. A cue that cannot judge a frame (the
 * face too small for it, or at the frame's edge) abstains, and its frames do not count for it.
 * A cue that sees an attack on three frames and on half the frames it judged decides `attack`
 * for good; a track the cues judged on `min-frames` frames is `live` unless some cue's sightings
 * of an attack reach that half, or its latest reading was a sighting (the track then stays
 * `undecided` until the next frame repeats or clears it). `model` adds a passive
 * MiniFASNet-family classifier described by its model card (`<stem>.card.toml`); the only one
 * in reach has no clear licence, so it is off unless named, and posts a warning when it loads.
 *
 * What one colour camera and these cues stop: a phone or tablet held up, and a print with its
 * margin (every one of the repository's phone and print attacks, by their sixth frame). What
 * they do not: a print trimmed to its picture, a picture whose own background is as white as
 * the paper, a borderless display held close, anything the face's landmarks cannot tell from a
 * head (their jitter is larger than a hand's turn of a photo). An infrared or depth camera is the
 * answer to those (docs/ACCURACY.md, "Presentation attacks"); fglive is one video filter today,
 * and a second sensor would join it as a second sink pad.
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert \
 *     ! fgdetect model=/usr/share/facegate/models/facegate_yunet_2023mar.onnx ! fgtrack ! fglive \
 *     ! fgmetadump ! fakesink
 * ]| Prints each frame's faces with their liveness (`GST_DEBUG=fglive:6` logs every cue's reading).
 */
use gst::glib;

mod imp;

glib::wrapper! {
    pub struct FaceLive(ObjectSubclass<imp::FaceLive>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceLive>(plugin, "fglive")
}
