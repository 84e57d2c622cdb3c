//! The gate appliance's operator tooling: enrolment, identification, the demo and benchmarks,
//! all running the same `facegate` elements the gate runs.

pub mod bench;
pub mod config;
pub mod dbus;
pub mod demo;
pub mod description;
pub mod enroll;
pub mod gate;
pub mod gate_demo;
pub mod identify;
pub mod journal;
pub mod observation;
pub mod pipeline;
pub mod policy;
pub mod private_bus;
pub mod service;
pub mod status;

/// Registers the statically linked `facegate` plugin; safe to call more than once.
pub fn init() -> Result<(), gst::glib::Error> {
    gst::init()?;
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // Fails only if the plugin is already known (for instance via GST_PLUGIN_PATH).
        let _ = gstfacegate::plugin_register_static();
    });
    Ok(())
}
