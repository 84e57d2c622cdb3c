// SPDX-License-Identifier: MIT OR Apache-2.0
//! What every facegate element shares about raw video: the formats it reads, and how a mapped
//! frame becomes a `facegate_vision::Frame` to read or a `Canvas` to draw on.

use facegate_vision::canvas::Canvas;
use facegate_vision::{ChromaSiting, Frame, PixelFormat, YuvMatrix};
use gst_video::prelude::*;
use gst_video::video_frame::IsVideoFrame;
use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat, VideoFrameRef, VideoInfo};
use thiserror::Error;

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
    [gst::PadDirection::Src, gst::PadDirection::Sink]
        .into_iter()
        .map(|direction| {
            let name = if direction == gst::PadDirection::Src {
                "src"
            } else {
                "sink"
            };
            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                .expect("static pad template is valid")
        })
        .collect()
}

/// Why a buffer could not be read (or drawn on) as a video frame.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("cannot map the buffer as a {format:?} frame of {width}x{height}: {reason}")]
    Map {
        format: VideoFormat,
        width: u32,
        height: u32,
        reason: gst::glib::BoolError,
    },
    #[error("{0:?} is not one of the formats the facegate elements read")]
    UnsupportedFormat(VideoFormat),
    #[error("plane {plane} of the {format:?} frame is unreadable: {reason}")]
    Plane {
        format: VideoFormat,
        plane: u32,
        reason: gst::glib::BoolError,
    },
    #[error(transparent)]
    Layout(#[from] facegate_vision::frame::FrameError),
}

/// A frame that does not fit its caps cannot be processed; the stream is broken, not the element.
impl From<FrameError> for gst::FlowError {
    fn from(_: FrameError) -> Self {
        gst::FlowError::Error
    }
}

fn pixel_format(format: VideoFormat) -> Result<PixelFormat, FrameError> {
    Ok(match format {
        VideoFormat::Rgb => PixelFormat::Rgb,
        VideoFormat::Bgr => PixelFormat::Bgr,
        VideoFormat::Rgbx => PixelFormat::Rgbx,
        VideoFormat::Bgrx => PixelFormat::Bgrx,
        VideoFormat::Rgba => PixelFormat::Rgba,
        VideoFormat::Bgra => PixelFormat::Bgra,
        VideoFormat::I420 => PixelFormat::I420,
        VideoFormat::Nv12 => PixelFormat::Nv12,
        other => return Err(FrameError::UnsupportedFormat(other)),
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

/// Our formats have at most three planes; fixed arrays keep the per-frame path allocation-free.
const MAX_PLANES: usize = 3;

fn strides<T>(frame: &VideoFrameRef<T>) -> ([usize; MAX_PLANES], usize) {
    let mut strides = [0usize; MAX_PLANES];
    for (stride, &plane_stride) in strides.iter_mut().zip(frame.plane_stride()) {
        *stride = plane_stride.max(0) as usize;
    }
    (strides, (frame.n_planes() as usize).min(MAX_PLANES))
}

/// The vision library's read-only view of a mapped frame, borrowing its planes.
pub fn vision_frame<'a>(
    frame: &'a VideoFrameRef<&gst::BufferRef>,
) -> Result<Frame<'a>, FrameError> {
    let info = frame.info();
    let format = pixel_format(info.format())?;
    let (strides, count) = strides(frame);
    let mut planes: [&[u8]; MAX_PLANES] = [&[]; MAX_PLANES];
    for (index, plane) in planes.iter_mut().enumerate().take(count) {
        *plane = frame
            .plane_data(index as u32)
            .map_err(|reason| FrameError::Plane {
                format: info.format(),
                plane: index as u32,
                reason,
            })?;
    }
    Ok(Frame::new(
        info.width() as usize,
        info.height() as usize,
        format,
        &planes[..count],
        &strides[..count],
        yuv_matrix(info),
    )?
    .with_chroma_siting(chroma_siting(info)))
}

/// Hands `f` a canvas over the planes of a frame mapped for writing.
pub fn with_frame_canvas<R>(
    frame: &mut VideoFrameRef<&mut gst::BufferRef>,
    f: impl FnOnce(&mut Canvas) -> R,
) -> Result<R, FrameError> {
    let info = frame.info().clone();
    let format = pixel_format(info.format())?;
    let (strides, count) = strides(frame);
    let mut planes = frame.planes_data_mut();
    let mut canvas = Canvas::new(
        info.width() as usize,
        info.height() as usize,
        format,
        &mut planes[..count],
        &strides[..count],
        yuv_matrix(&info),
    )?;
    Ok(f(&mut canvas))
}

/// The buffer under a frame mapped for writing, to attach metas to in
/// `VideoFilterImpl::transform_frame_ip`.
///
/// gstreamer-rs hands out only `&BufferRef` from a `VideoFrameRef`, even a writable one, so the
/// pointer the frame holds is turned back into the `&mut` it was mapped from.
pub fn buffer_mut<'a>(frame: &'a mut VideoFrameRef<&mut gst::BufferRef>) -> &'a mut gst::BufferRef {
    // SAFETY: a `VideoFrameRef<&mut BufferRef>` stands for exclusive access to its buffer
    // (GstVideoFilter makes the buffer writable and drops the reference its mapping took before
    // calling `transform_frame_ip`). The result borrows `frame` mutably, so no plane slice of the
    // frame can be alive alongside it, and metas live apart from the mapped memory.
    unsafe { gst::BufferRef::from_mut_ptr(frame.as_raw().buffer) }
}

/// Maps `buffer` for reading and hands the frame to `f` (for code outside a `VideoFilter`, such
/// as benchmarks and tests that hold a buffer and its caps).
pub fn with_frame<R>(
    info: &VideoInfo,
    buffer: &gst::BufferRef,
    f: impl FnOnce(&Frame) -> R,
) -> Result<R, FrameError> {
    let mapped = VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|reason| map_error(info, reason))?;
    Ok(f(&vision_frame(&mapped)?))
}

fn map_error(info: &VideoInfo, reason: gst::glib::BoolError) -> FrameError {
    FrameError::Map {
        format: info.format(),
        width: info.width(),
        height: info.height(),
        reason,
    }
}
