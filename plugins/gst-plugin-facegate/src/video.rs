//! What every facegate element shares about raw video: the formats it reads and how a mapped
//! buffer becomes a `facegate_vision::Frame`.

use facegate_vision::canvas::Canvas;
use facegate_vision::{ChromaSiting, Frame, PixelFormat, YuvMatrix};
use gst_video::prelude::*;
use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat, VideoFrameRef, VideoInfo};

/// Camera and decoder formats read directly, without a videoconvert in front.
pub const FORMATS: [VideoFormat; 8] = [
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::I420,
    VideoFormat::Nv12,
];

pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS)
        .build()
}

/// Always-present sink and src pads with [`caps`], for in-place filters.
pub fn filter_pad_templates() -> Vec<gst::PadTemplate> {
    let caps = caps();
    ["src", "sink"]
        .into_iter()
        .map(|name| {
            let direction = if name == "src" {
                gst::PadDirection::Src
            } else {
                gst::PadDirection::Sink
            };
            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                .expect("static pad template is valid")
        })
        .collect()
}

fn pixel_format(format: VideoFormat) -> Option<PixelFormat> {
    Some(match format {
        VideoFormat::Rgb => PixelFormat::Rgb,
        VideoFormat::Bgr => PixelFormat::Bgr,
        VideoFormat::Rgbx => PixelFormat::Rgbx,
        VideoFormat::Bgrx => PixelFormat::Bgrx,
        VideoFormat::Rgba => PixelFormat::Rgba,
        VideoFormat::Bgra => PixelFormat::Bgra,
        VideoFormat::I420 => PixelFormat::I420,
        VideoFormat::Nv12 => PixelFormat::Nv12,
        _ => return None,
    })
}

fn yuv_matrix(info: &VideoInfo) -> YuvMatrix {
    let colorimetry = info.colorimetry();
    let full_range = colorimetry.range() == VideoColorRange::Range0_255;
    match (colorimetry.matrix(), full_range) {
        (VideoColorMatrix::Bt709, true) => YuvMatrix::BT709_FULL,
        (VideoColorMatrix::Bt709, false) => YuvMatrix::BT709_LIMITED,
        (_, true) => YuvMatrix::BT601_FULL,
        (_, false) => YuvMatrix::BT601_LIMITED,
    }
}

fn chroma_siting(info: &VideoInfo) -> ChromaSiting {
    if info
        .chroma_site()
        .contains(gst_video::VideoChromaSite::H_COSITED)
    {
        ChromaSiting::Cosited
    } else {
        ChromaSiting::Centred
    }
}

/// Maps `buffer` for reading and hands the frame to `f`.
pub fn with_frame<R>(
    info: &VideoInfo,
    buffer: &gst::BufferRef,
    f: impl FnOnce(&Frame) -> R,
) -> Result<R, gst::FlowError> {
    let mapped =
        VideoFrameRef::from_buffer_ref_readable(buffer, info).map_err(|_| gst::FlowError::Error)?;
    let format = pixel_format(info.format()).ok_or(gst::FlowError::NotNegotiated)?;
    // Our formats have at most three planes; fixed arrays keep the per-frame path allocation-free.
    let count = (mapped.n_planes() as usize).min(3);
    let mut planes: [&[u8]; 3] = [&[]; 3];
    let mut strides = [0usize; 3];
    for plane in 0..count {
        planes[plane] = mapped
            .plane_data(plane as u32)
            .map_err(|_| gst::FlowError::Error)?;
        strides[plane] = mapped.plane_stride()[plane].max(0) as usize;
    }
    let frame = Frame::new(
        info.width() as usize,
        info.height() as usize,
        format,
        &planes[..count],
        &strides[..count],
        yuv_matrix(info),
    )
    .map_err(|_| gst::FlowError::Error)?
    .with_chroma_siting(chroma_siting(info));
    Ok(f(&frame))
}

/// Hands a canvas over the planes of a frame mapped for writing to `f`.
pub fn with_canvas<R>(
    frame: &mut VideoFrameRef<&mut gst::BufferRef>,
    f: impl FnOnce(&mut Canvas) -> R,
) -> Result<R, gst::FlowError> {
    let info = frame.info();
    let format = pixel_format(info.format()).ok_or(gst::FlowError::NotNegotiated)?;
    let (width, height) = (info.width() as usize, info.height() as usize);
    let matrix = yuv_matrix(info);
    let count = (frame.n_planes() as usize).min(3);
    let mut strides = [0usize; 3];
    for (stride, &plane_stride) in strides.iter_mut().zip(frame.plane_stride()) {
        *stride = plane_stride.max(0) as usize;
    }
    let mut planes = frame.planes_data_mut();
    let mut canvas = Canvas::new(
        width,
        height,
        format,
        &mut planes[..count],
        &strides[..count],
        matrix,
    )
    .map_err(|_| gst::FlowError::Error)?;
    Ok(f(&mut canvas))
}
