// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegatectl, the gate operator's command line: enrolment, identification and the gate's
//! status, running the same `facegate` elements the gate runs. `main.rs` is the program; this
//! library is shared with the development tools and the end-to-end tests.

pub mod enroll;
pub mod evaluate;
pub mod identify;
mod jpeg;
pub mod output;
pub mod photo_embedder;
pub mod pipeline;
pub mod standing;
pub mod status;
pub mod token;

use output::OutputError;

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

/// The exit status of a command whose standard output was closed by its reader (`| head -1`):
/// 128 + SIGPIPE, what a shell reports for a program that the signal ended, so that a
/// `set -o pipefail` script sees what it sees from any other program.
pub const EXIT_CLOSED_OUTPUT: u8 = 128 + 13;

/// The edge of a command-line program: logs to stderr (filtered by `FACEGATE_LOG`), runs `run`
/// and turns its error into one line, `program: what went wrong`, and a failing exit status.
/// Standard output closed by its reader ends the program quietly with `EXIT_CLOSED_OUTPUT`.
pub fn run_main(program: &str, run: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FACEGATE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<OutputError>()
                    .is_some_and(OutputError::is_closed)
            }) =>
        {
            std::process::ExitCode::from(EXIT_CLOSED_OUTPUT)
        }
        Err(error) => {
            eprintln!("{program}: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes as one line, each said once: a cause whose text the line already
/// holds (an error that prints its source and also returns it as `source()`) is not repeated.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let error = anyhow::Error::new(Repeats(std::io::Error::other("disk on fire")))
            .context("enrolling p-1");
        assert_eq!(one_line(&error), "enrolling p-1: outer: disk on fire");
        let chained = anyhow::Error::new(std::io::Error::other("no route")).context("status");
        assert_eq!(one_line(&chained), "status: no route");
    }
}
