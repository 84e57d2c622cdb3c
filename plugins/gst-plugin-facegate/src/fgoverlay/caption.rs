// SPDX-License-Identifier: MIT OR Apache-2.0
//! Captions laid out with Pango and rasterised with cairo into overlay rectangles, kept for as
//! long as their text is on screen so that a frame whose captions have not changed renders
//! nothing.
//!
//! Pango shapes the text (Arabic letters joined, right-to-left runs reordered, combining marks
//! placed) and fontconfig falls back from the caption font to any installed font that has the
//! glyphs, so a name in any script the system has a font for is drawn, not boxes or `?`.

use facegate_vision::canvas::Colour;
use gst_video::{VideoFormat, VideoFrameFlags, VideoOverlayFormatFlags, VideoOverlayRectangle};
use pango::prelude::*;

/// Behind the text, so that captions read on any picture.
const BACKGROUND: Colour = Colour::rgb(16, 16, 16);

/// Fontconfig's generic family: its sans-serif font first, then whichever fonts cover the rest.
const FONT_FAMILY: &str = "Sans";

/// Caption text height in pixels per step of the element's `text-scale`: 8, so that each scale
/// keeps the text height it gave with the 8x8 bitmap font captions were first drawn in.
pub const PIXELS_PER_SCALE: u32 = 8;

/// How many rendered captions are kept when they fall off screen: enough for a queue of people
/// at the gate, each seen with a few similarity values, before the least recently shown goes.
const KEPT: usize = 32;

/// cairo's ARGB32 is a native-endian 32-bit word per pixel, premultiplied: GStreamer's overlay
/// rectangle format.
#[cfg(target_endian = "little")]
const ARGB32: VideoFormat = VideoFormat::Bgra;
#[cfg(target_endian = "big")]
const ARGB32: VideoFormat = VideoFormat::Argb;

#[derive(Debug, thiserror::Error)]
pub enum CaptionError {
    #[error("cairo cannot set up the caption's font options: {0}")]
    Layout(cairo::Error),
    #[error("cairo cannot draw a {width}x{height} caption: {source}")]
    Cairo {
        width: i32,
        height: i32,
        source: cairo::Error,
    },
    #[error("cannot read back the caption's pixels: {0}")]
    Pixels(#[from] cairo::BorrowError),
    #[error("cannot describe the caption's pixels as video: {0}")]
    Meta(#[from] gst::glib::BoolError),
}

/// How captions look on the current stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Text height (the font's em) in pixels.
    text_px: u32,
    /// Dark margin around the text, in pixels.
    padding: u32,
    /// Widest a caption may be, margins included: longer text is cut short with an ellipsis.
    max_width: u32,
}

impl Style {
    /// The style for `text_scale` on frames `frame_width` pixels wide.
    pub fn new(text_scale: u32, frame_width: u32) -> Self {
        let scale = text_scale.max(1);
        Style {
            text_px: scale.saturating_mul(PIXELS_PER_SCALE),
            padding: scale,
            max_width: frame_width.max(1),
        }
    }
}

/// One rendered caption.
#[derive(Debug)]
pub struct Caption {
    text: String,
    colour: Colour,
    rectangle: VideoOverlayRectangle,
    width: u32,
    height: u32,
    /// The frame it was last shown on, for eviction.
    shown: u64,
}

impl Caption {
    /// Width and height in pixels, margins included.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The caption's rectangle with its top-left corner at (`x`, `y`) on the frame.
    ///
    /// Moves the kept rectangle in place; only when something downstream still holds it (a
    /// composition attached to an earlier buffer) is it copied first, sharing the pixels.
    pub fn placed_at(&mut self, x: i32, y: i32) -> VideoOverlayRectangle {
        let (width, height) = (self.width, self.height);
        if self.rectangle.render_rectangle() != (x, y, width, height) {
            self.rectangle
                .make_mut()
                .set_render_rectangle(x, y, width, height);
        }
        self.rectangle.clone()
    }
}

/// Rendered captions keyed by text and colour, all in one [`Style`].
#[derive(Debug)]
pub struct Captions {
    style: Style,
    kept: Vec<Caption>,
    frame: u64,
}

impl Captions {
    pub fn new(style: Style) -> Self {
        Captions {
            style,
            kept: Vec::with_capacity(KEPT),
            frame: 0,
        }
    }

    /// Starts a frame drawn in `style`; a style unlike the last one drops every caption.
    pub fn begin_frame(&mut self, style: Style) {
        if self.style != style {
            self.kept.clear();
            self.style = style;
        }
        self.frame += 1;
    }

    /// The caption for `text` in `colour`, rendered now unless it is kept from an earlier frame.
    pub fn get(&mut self, text: &str, colour: Colour) -> Result<&mut Caption, CaptionError> {
        let frame = self.frame;
        // A linear search: a frame shows a handful of captions and at most `KEPT` are kept.
        let index = match self
            .kept
            .iter()
            .position(|c| c.colour == colour && c.text == text)
        {
            Some(index) => index,
            None => {
                let caption = render(text, colour, &self.style)?;
                self.keep(caption)
            }
        };
        let caption = &mut self.kept[index];
        caption.shown = frame;
        Ok(caption)
    }

    /// Stores `caption` in place of the least recently shown one not on this frame, once `KEPT`
    /// are kept; returns its index.
    fn keep(&mut self, caption: Caption) -> usize {
        if self.kept.len() >= KEPT
            && let Some((index, _)) = self
                .kept
                .iter()
                .enumerate()
                .filter(|(_, c)| c.shown != self.frame)
                .min_by_key(|(_, c)| c.shown)
        {
            self.kept[index] = caption;
            return index;
        }
        self.kept.push(caption);
        self.kept.len() - 1
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.len()
    }
}

fn cairo_rgb(colour: Colour) -> (f64, f64, f64) {
    let channel = |c: u8| f64::from(c) / 255.0;
    (channel(colour.r), channel(colour.g), channel(colour.b))
}

/// `text` laid out on one line in `style`, cut short with an ellipsis where it would not fit.
fn layout(text: &str, style: &Style) -> Result<pango::Layout, cairo::Error> {
    // The thread's font map, so that fontconfig's fonts are loaded once per streaming thread; a
    // context and layout per rendering keep no Pango object (which may not cross threads) in
    // the element's state.
    let context = pangocairo::FontMap::default().create_context();
    let mut options = cairo::FontOptions::new()?;
    // Grey-level antialiasing: subpixel colour fringes would show once blended into YUV video.
    options.set_antialias(cairo::Antialias::Gray);
    pangocairo::functions::context_set_font_options(&context, Some(&options));
    // The caption reads left to right ("name similarity"); the name's own direction is kept by
    // the isolate around it (see `marks`).
    context.set_base_dir(pango::Direction::Ltr);
    let layout = pango::Layout::new(&context);
    layout.set_auto_dir(false);
    layout.set_single_paragraph_mode(true);
    let mut font = pango::FontDescription::new();
    font.set_family(FONT_FAMILY);
    font.set_absolute_size(f64::from(style.text_px) * f64::from(pango::SCALE));
    layout.set_font_description(Some(&font));
    let max_text_width = i32::try_from(style.max_width)
        .unwrap_or(i32::MAX)
        .saturating_sub(2 * padding(style))
        .max(1);
    layout.set_width(max_text_width.saturating_mul(pango::SCALE));
    layout.set_ellipsize(pango::EllipsizeMode::End);
    layout.set_text(text);
    Ok(layout)
}

/// The style's margin, in cairo's units; large enough for any real margin.
fn padding(style: &Style) -> i32 {
    i32::try_from(style.padding).unwrap_or(i32::MAX / 4)
}

/// Lays out `text` and draws it in `colour` on an opaque [`BACKGROUND`] box.
fn render(text: &str, colour: Colour, style: &Style) -> Result<Caption, CaptionError> {
    let layout = layout(text, style).map_err(CaptionError::Layout)?;
    let padding = padding(style);
    let (_, logical) = layout.pixel_extents();
    let width = logical
        .width()
        .saturating_add(2 * padding)
        .clamp(1, i32::try_from(style.max_width).unwrap_or(i32::MAX));
    let height = logical.height().saturating_add(2 * padding).max(1);
    let cairo_error = |source| CaptionError::Cairo {
        width,
        height,
        source,
    };
    let surface =
        cairo::ImageSurface::create(cairo::Format::ARgb32, width, height).map_err(cairo_error)?;
    {
        let cr = cairo::Context::new(&surface).map_err(cairo_error)?;
        let (r, g, b) = cairo_rgb(BACKGROUND);
        cr.set_source_rgb(r, g, b);
        cr.paint().map_err(cairo_error)?;
        let (r, g, b) = cairo_rgb(colour);
        cr.set_source_rgb(r, g, b);
        cr.move_to(
            f64::from(padding - logical.x()),
            f64::from(padding - logical.y()),
        );
        pangocairo::functions::show_layout(&cr, &layout);
    }
    let stride = surface.stride();
    let mut pixels = None;
    surface.with_data(|data| pixels = Some(data.to_vec()))?;
    let mut buffer = gst::Buffer::from_mut_slice(pixels.unwrap_or_default());
    // Both positive and within i32: cairo made a surface of this size.
    let (width, height) = (width as u32, height as u32);
    gst_video::VideoMeta::add_full(
        buffer.get_mut().expect("a new buffer is writable"),
        VideoFrameFlags::empty(),
        ARGB32,
        width,
        height,
        &[0],
        &[stride],
    )?;
    let rectangle = VideoOverlayRectangle::new_raw(
        &buffer,
        0,
        0,
        width,
        height,
        VideoOverlayFormatFlags::PREMULTIPLIED_ALPHA,
    );
    Ok(Caption {
        text: text.to_owned(),
        colour,
        rectangle,
        width,
        height,
        shown: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREEN: Colour = Colour::rgb(0, 220, 60);

    fn captions(text_scale: u32, frame_width: u32) -> Captions {
        gst::init().unwrap();
        let mut captions = Captions::new(Style::new(text_scale, frame_width));
        captions.begin_frame(Style::new(text_scale, frame_width));
        captions
    }

    #[test]
    fn installed_fonts_cover_the_scripts_of_passenger_names() {
        gst::init().unwrap();
        let style = Style::new(2, 640);
        for (script, name) in [
            ("Latin", "Zoë Ångström-Müller"),
            ("Greek", "Αλέξανδρος Παπαδόπουλος"),
            ("Cyrillic", "Анна Каренина"),
            ("Arabic", "محمد عبد الله"),
            ("Hebrew", "דוד לוי"),
            ("Chinese", "张伟"),
            ("Japanese", "山田 はなこ"),
            ("Korean", "김민준"),
        ] {
            let layout = layout(name, &style).unwrap();
            assert_eq!(
                layout.unknown_glyphs_count(),
                0,
                "{script} name {name:?} has glyphs no installed font covers: install the fonts \
                 scripts/setup.sh lists (fonts-dejavu-core, fonts-wqy-microhei)"
            );
        }
    }

    #[test]
    fn a_kept_caption_is_not_rendered_again() {
        let mut captions = captions(2, 640);
        let first = captions.get("Ada 0.71", GREEN).unwrap().placed_at(3, 4);
        captions.begin_frame(Style::new(2, 640));
        let again = captions.get("Ada 0.71", GREEN).unwrap().placed_at(3, 4);
        assert_eq!(first.seqnum(), again.seqnum());
        assert_eq!(captions.len(), 1);
        // Another colour is another caption.
        captions.get("Ada 0.71", Colour::AMBER).unwrap();
        assert_eq!(captions.len(), 2);
    }

    #[test]
    fn moving_a_caption_moves_its_rectangle() {
        let mut captions = captions(2, 640);
        let caption = captions.get("#7", GREEN).unwrap();
        let (w, h) = caption.size();
        let at = caption.placed_at(10, 20);
        assert_eq!(at.render_rectangle(), (10, 20, w, h));
        // Still held (as by a buffer downstream): moving copies, leaving the held one in place.
        let moved = caption.placed_at(30, 40);
        assert_eq!(moved.render_rectangle(), (30, 40, w, h));
        assert_eq!(at.render_rectangle(), (10, 20, w, h));
    }

    #[test]
    fn text_size_follows_the_scale_and_stops_at_the_frame_edge() {
        let mut captions = captions(2, 640);
        let (w2, h2) = captions.get("face 0.93", GREEN).unwrap().size();
        captions.begin_frame(Style::new(4, 640));
        let (w4, h4) = captions.get("face 0.93", GREEN).unwrap().size();
        assert!((16..32).contains(&h2), "height {h2} at scale 2");
        assert!(
            w4 > w2 * 3 / 2 && h4 > h2 * 3 / 2,
            "{w2}x{h2} then {w4}x{h4}"
        );
        captions.begin_frame(Style::new(4, 50));
        let (w, _) = captions
            .get("Пётр Ильич Чайковский 0.93", GREEN)
            .unwrap()
            .size();
        assert_eq!(w, 50);
    }

    #[test]
    fn captions_off_screen_make_way_for_new_ones() {
        let mut captions = captions(1, 320);
        for n in 0..KEPT + 10 {
            captions.begin_frame(Style::new(1, 320));
            captions.get(&format!("#{n}"), GREEN).unwrap();
        }
        assert_eq!(captions.len(), KEPT);
        // More captions on one frame than are kept: none is dropped while shown.
        captions.begin_frame(Style::new(1, 320));
        let seqnums: Vec<u32> = (0..KEPT + 5)
            .map(|n| {
                let caption = captions.get(&format!("face {n}"), GREEN).unwrap();
                caption.placed_at(0, 0).seqnum()
            })
            .collect();
        assert_eq!(captions.len(), KEPT + 5);
        for (n, seqnum) in seqnums.iter().enumerate() {
            let caption = captions.get(&format!("face {n}"), GREEN).unwrap();
            assert_eq!(caption.placed_at(0, 0).seqnum(), *seqnum, "face {n}");
        }
    }
}
