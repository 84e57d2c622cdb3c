// SPDX-License-Identifier: MIT OR Apache-2.0
//! Arbitrary bytes as facegated's configuration: up to the first NUL byte, the TOML file; after
//! it, one `NAME=VALUE` environment override a line. `ServiceConfig::load_with_env` must give a
//! configuration or a one-line error naming the file or the environment variable at fault, never
//! a panic; a configuration it gives
//! must yield the pipeline's variables. The seeds (scripts/fuzz.sh) are the repository's
//! configuration files with overrides of every section.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use facegated::config::ServiceConfig;
use libfuzzer_sys::fuzz_target;

/// Where each input's TOML is written (the loader reads a file, as the service does).
fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let file = dir.path().join("facegate.toml");
            (dir, file)
        })
        .1
}

fn environment(text: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|&byte| byte == 0) {
        Some(at) => (&data[..at], environment(&data[at + 1..])),
        None => (data, Vec::new()),
    };
    let file = config_file();
    std::fs::write(file, toml).expect("write the configuration");
    let names: Vec<String> = env.iter().map(|(name, _)| name.clone()).collect();
    match ServiceConfig::load_with_env(file, env) {
        Ok(config) => {
            config.pipeline_variables();
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains(['\n', '\r']),
                "a configuration error spans lines: {message:?}"
            );
            // A name is shown with its control characters escaped, as every message is.
            let shown = |name: &str| -> String {
                name.chars()
                    .flat_map(|c| match c.is_control() {
                        true => c.escape_default().collect::<Vec<_>>(),
                        false => vec![c],
                    })
                    .collect()
            };
            let names_a_variable = names.iter().any(|name| {
                message.starts_with(&format!("environment variable {}: ", shown(name)))
            });
            assert!(
                message.starts_with(&*file.to_string_lossy()) || names_a_variable,
                "a configuration error names neither the file nor a variable: {message:?}"
            );
        }
    }
});
