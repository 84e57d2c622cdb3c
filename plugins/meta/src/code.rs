// SPDX-License-Identifier: MIT OR Apache-2.0
//! QR codes on a buffer: one `GstVideoRegionOfInterestMeta` of roi type [`qr-code`](CODE_ROI_TYPE)
//! per decoded code, carrying a [`facegate-code`](CODE) param with its `text`. fgqr adds them;
//! fgmatch reads a token's text from them. They travel in-band with the frame they were seen on,
//! never on the bus: a token's text carries its passenger's face template.

use gst_video::VideoRegionOfInterestMeta;

use crate::{MetaError, PixelRect, field_error};

/// The roi type of a decoded QR code.
pub const CODE_ROI_TYPE: &str = "qr-code";
/// The param of a decoded QR code: `text` (string).
pub const CODE: &str = "facegate-code";

/// Adds a decoded code to the buffer.
pub fn add_code(buffer: &mut gst::BufferRef, bbox: PixelRect, text: &str) {
    let mut meta = VideoRegionOfInterestMeta::add(buffer, CODE_ROI_TYPE, bbox);
    meta.add_param(gst::Structure::builder(CODE).field("text", text).build());
}

/// The text of every decoded code on the buffer, in the order they were added.
pub fn codes(buffer: &gst::BufferRef) -> impl Iterator<Item = Result<String, MetaError>> + '_ {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|meta| meta.roi_type() == CODE_ROI_TYPE)
        .map(|meta| {
            meta.param(CODE)
                .ok_or_else(|| {
                    field_error(
                        CODE,
                        "text",
                        "the qr-code region has no facegate-code param",
                    )
                })?
                .get::<String>("text")
                .map_err(|e| field_error(CODE, "text", e))
        })
}

/// Removes every decoded code from the buffer (once read: a token's text holds its template).
pub fn remove_codes(buffer: &mut gst::BufferRef) {
    buffer.foreach_meta_mut(|mut meta| {
        let is_code = meta
            .downcast_ref::<VideoRegionOfInterestMeta>()
            .is_some_and(|roi| roi.roi_type() == CODE_ROI_TYPE);
        std::ops::ControlFlow::Continue(if is_code {
            gst::buffer::BufferMetaForeachAction::Remove
        } else {
            gst::buffer::BufferMetaForeachAction::Keep
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_faces_do_not_see_them() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        let buf = buffer.get_mut().unwrap();
        add_code(buf, (1, 2, 30, 30), "FGT1:ABC");
        add_code(buf, (40, 2, 30, 30), "another");
        let texts: Vec<String> = codes(buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(texts, ["FGT1:ABC", "another"]);
        assert_eq!(crate::faces(buf).count(), 0);
        crate::add_face(buf, (0, 0, 8, 8), 0.9, &[[0.0; 2]; crate::LANDMARKS], "m");
        remove_codes(buf);
        assert_eq!(codes(buf).count(), 0);
        assert_eq!(crate::faces(buf).count(), 1);
    }
}
