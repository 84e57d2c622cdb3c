// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tracing` events (which plugins/vision logs through) into the GStreamer debug log, so that
//! `GST_DEBUG=fgvision:5 gst-launch-1.0 …` shows them: gst-launch-1.0 installs no `tracing`
//! subscriber, and without one they vanish.

use std::fmt::{self, Write as _};
use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Name of the GStreamer debug category the events are logged in.
pub const CATEGORY: &str = "fgvision";

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        CATEGORY,
        gst::DebugColorFlags::empty(),
        Some("FaceGate vision library (its tracing events)"),
    )
});

/// A `tracing_subscriber` layer that logs every event in the `fgvision` debug category, at the
/// GStreamer level matching the event's, with its target as the function name and its fields
/// after the message. Spans are not logged.
///
/// The plugin installs it as the global subscriber when it is registered and none is installed
/// yet. An application with its own subscriber installs that first (the plugin then leaves it
/// alone) and may add this layer to it to have the events in the GStreamer log too.
#[derive(Clone, Copy, Debug, Default)]
pub struct GstDebugLayer;

impl<S: Subscriber> Layer<S> for GstDebugLayer {
    // The category's threshold can change at any time (gst_debug_set_threshold_for_name), so
    // the answer is not cached per callsite: `enabled` asks on every event.
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        CAT.above_threshold(debug_level(*metadata.level()))
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let level = debug_level(*metadata.level());
        if !CAT.above_threshold(level) {
            return;
        }
        let mut text = EventText::default();
        event.record(&mut text);
        let file = glib::GString::from(metadata.file().unwrap_or("<unknown>"));
        CAT.log(
            None::<&gst::Object>,
            level,
            file.as_gstr(),
            metadata.target(),
            metadata.line().unwrap_or(0),
            format_args!("{}{}", text.message, text.fields),
        );
    }
}

/// tracing's TRACE is for fine-grained detail, GStreamer's LOG level; GStreamer's own TRACE is
/// for reference counting.
fn debug_level(level: Level) -> gst::DebugLevel {
    match level {
        Level::ERROR => gst::DebugLevel::Error,
        Level::WARN => gst::DebugLevel::Warning,
        Level::INFO => gst::DebugLevel::Info,
        Level::DEBUG => gst::DebugLevel::Debug,
        Level::TRACE => gst::DebugLevel::Log,
    }
}

/// An event's `message` and its other fields as ` name=value` pairs.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Installs [`GstDebugLayer`] as the global `tracing` subscriber, unless the program has one.
pub(crate) fn install_unless_set() {
    // Registered now, so that GST_DEBUG patterns and --gst-debug-help see it before any event.
    LazyLock::force(&CAT);
    let subscriber = tracing_subscriber::registry().with(GstDebugLayer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        gst::debug!(
            CAT,
            "the program has its own tracing subscriber; vision events go there"
        );
    }
}
