// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegatectl, the gate operator's command line: enrolment, identification and the gate's
//! status, running the same `facegate` elements the gate runs. `main.rs` is the program; this
//! library is shared with the development tools and the end-to-end tests.

pub mod enroll;
pub mod evaluate;
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

/// The edge of a command-line program: logs to stderr (filtered by `FACEGATE_LOG`), runs `run`
/// and turns its error into one line, `program: what went wrong`, and a failing exit status.
pub fn run_main(program: &str, run: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FACEGATE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
