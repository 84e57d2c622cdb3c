// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegatectl, the gate operator's command line: enrolment, identification and the gate's
//! status, running the same `facegate` elements the gate runs. `main.rs` is the program; this
//! library is shared with the development tools and the end-to-end tests.

pub mod enroll;
pub mod identify;
pub mod pipeline;
pub mod status;

/// Initialises GStreamer and registers the statically linked `facegate` plugin; safe to call
/// more than once.
pub fn init() -> Result<(), gst::glib::Error> {
    gst::init()?;
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // Fails only if the plugin is already known (for instance via GST_PLUGIN_PATH).
        let _ = gstfacegate::plugin_register_static();
    });
    Ok(())
}
