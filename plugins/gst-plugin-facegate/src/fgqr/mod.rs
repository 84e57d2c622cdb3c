// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-fgqr
 * @see_also: fgmatch
 *
 * `fgqr` finds and decodes QR codes in each frame, such as the signed token a passenger's
 * phone shows the gate (`facegatectl token issue`), and attaches each as a region of roi type
 * `qr-code` with a `facegate-code` param holding its `text`. fgmatch downstream, in
 * `identification=token` or `token-or-gallery`, verifies a token from it and compares the live
 * face with the token's template. The text stays on the buffer: it is never posted on the bus
 * or logged, since a token carries its passenger's face template.
 *
 * The codes are read from the frame's brightness (a YUV frame's luma plane as it is) by
 * `decoder`: Debian's libzbar by default, or one of two pure-Rust decoders; `interval` reads every Nth frame only, and 0 none (the
 * gate service sets 0 when it looks for no token).
 *
 * ## Example launch line
 *
 * |[
 * gst-launch-1.0 filesrc location=token.png ! pngdec ! videoconvert ! imagefreeze num-buffers=1 \
 *     ! fgqr ! fakesink
 * ]| Decodes the code of a token PNG (`GST_DEBUG=fgqr:5` says how many codes each frame held).
 */
use gst::glib;

mod imp;

glib::wrapper! {
    pub struct QrRead(ObjectSubclass<imp::QrRead>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::register_element::<QrRead>(plugin, "fgqr")
}
