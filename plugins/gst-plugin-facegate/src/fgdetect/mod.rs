// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fgdetect
 * @see_also: fgtrack, fgembed, fgmetadump
 *
 * `fgdetect` runs the YuNet face detector on each frame and attaches one
 * `GstVideoRegionOfInterestMeta` of roi type `face` per face found, in frame pixels, with a
 * `facegate-detection` param: the score, five landmarks (eyes, nose tip, mouth corners) and the
 * model's identity. It reads RGB, BGR, RGBx, BGRx, RGBA, BGRA, I420 and NV12 directly and never
 * changes the pixels.
 *
 * The frame is scaled to `input-size` on its longer side (aspect kept) for the network; smaller
 * is faster, larger finds smaller faces. `refine-landmarks` detects each face that scaling made
 * smaller again in a crop around it, at up to full resolution, for its landmarks (off by default:
 * it did not lift same-person similarity on FaceGate's corpus, docs/ACCURACY.md). With
 * `interval` above 1 the detector runs on every Nth frame and the frames between carry its last
 * faces. A missing, corrupt or wrongly shaped model fails the state change with an error naming
 * the file.
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert \
 *     ! fgdetect model=/usr/share/facegate/models/facegate_yunet_2023mar.onnx input-size=320 \
 *     ! fgmetadump ! fakesink
 * ]| Detects faces in a camera's frames and prints each frame's faces as a JSON line.
 */
use gst::glib;

mod imp;

glib::wrapper! {
    pub struct FaceDetect(ObjectSubclass<imp::FaceDetect>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<FaceDetect>(plugin, "fgdetect")
}
