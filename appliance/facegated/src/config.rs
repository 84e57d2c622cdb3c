// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated's configuration: a TOML file plus `FACEGATE_SECTION__KEY` environment overrides
//! (docs/GATE-SERVICE.md lists every key). Every key is typed and checked; a problem is one line
//! naming the key, the file and what was expected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;
use thiserror::Error;

use crate::bus::BusConfig;
use crate::gate::GateConfig;
use crate::journal::JournalConfig;
use crate::policy::PolicyConfig;

/// Environment variables that override keys start with this and name `SECTION__KEY`.
pub const ENV_PREFIX: &str = "FACEGATE_";
const ENV_SEPARATOR: &str = "__";

#[derive(Debug, Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// gst-launch description with `${name}` variables.
    pub file: PathBuf,
    pub restart_min_ms: u64,
    pub restart_max_ms: u64,
    /// End the service when the stream ends (a file source in the demo) instead of restarting.
    pub exit_on_eos: bool,
    pub variables: BTreeMap<String, String>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            file: PathBuf::from("/usr/share/facegate/pipelines/gate.pipeline"),
            restart_min_ms: 500,
            restart_max_ms: 30_000,
            exit_on_eos: false,
            variables: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    pub ort_library: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: PathBuf::from(facegate_vision::runtime::SYSTEM_MODEL_DIR),
            ort_library: PathBuf::from(facegate_vision::runtime::SYSTEM_ORT_LIBRARY),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GalleryConfig {
    pub dir: PathBuf,
}

impl Default for GalleryConfig {
    fn default() -> Self {
        GalleryConfig {
            dir: PathBuf::from("/var/lib/facegate/gallery"),
        }
    }
}

/// The whole service configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub pipeline: PipelineConfig,
    pub models: ModelsConfig,
    pub gallery: GalleryConfig,
    pub policy: PolicyConfig,
    pub gate: GateConfig,
    pub journal: JournalConfig,
    pub dbus: BusConfig,
}

impl ServiceConfig {
    /// Reads `file` and the process environment's overrides.
    pub fn load(file: &Path) -> Result<ServiceConfig, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Reads `file` with overrides from `env` (tests pass their own instead of the process's).
    pub fn load_with_env(
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ServiceConfig, ConfigError> {
        let error = |message: String| ConfigError {
            file: file.to_path_buf(),
            message,
        };
        if !file.is_file() {
            return Err(error("no such configuration file".into()));
        }
        // Only FACEGATE_SECTION__KEY names a key: FACEGATE_MODEL_DIR and friends configure the
        // elements and tools, not the service, and must not read as unknown keys here.
        let overrides: HashMap<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains(ENV_SEPARATOR))
            .collect();
        let built = Config::builder()
            .add_source(File::from(file).format(FileFormat::Toml).required(true))
            .add_source(
                Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
                    .prefix_separator("_")
                    .separator(ENV_SEPARATOR)
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("policy.disabled")
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| error(one_line(&e.to_string())))?;
        let config: ServiceConfig = built
            .try_deserialize()
            .map_err(|e| error(one_line(&e.to_string())))?;
        config.validate().map_err(error)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let pipeline = &self.pipeline;
        if pipeline.restart_min_ms == 0 || pipeline.restart_min_ms > pipeline.restart_max_ms {
            return Err(format!(
                "pipeline.restart_min_ms: must be at least 1 and at most pipeline.restart_max_ms ({})",
                pipeline.restart_max_ms
            ));
        }
        self.policy.validate()?;
        self.gate.validate().map_err(|e| e.to_string())?;
        self.journal.validate().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The `${name}` values a pipeline description may use.
    pub fn pipeline_variables(&self) -> BTreeMap<String, String> {
        let mut variables = self.pipeline.variables.clone();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        variables.insert("models".into(), path(&self.models.dir));
        variables.insert("gallery".into(), path(&self.gallery.dir));
        variables.insert("threshold".into(), self.policy.threshold.to_string());
        variables
            .entry("input_size".into())
            .or_insert_with(|| facegate_vision::detector::DEFAULT_INPUT_SIZE.to_string());
        variables
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let file = dir.join("facegate.toml");
        std::fs::write(&file, text).unwrap();
        file
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), text);
        ServiceConfig::load_with_env(
            &file,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let config = load("", &[]).unwrap();
        assert_eq!(config, ServiceConfig::default());
        assert_eq!(config.gate.pulse_ms, 800);
    }

    #[test]
    fn environment_overrides_keys_and_ignores_other_facegate_variables() {
        let config = load(
            "[gate]\npulse_ms = 500\n",
            &[
                ("FACEGATE_GATE__PULSE_MS", "900"),
                ("FACEGATE_POLICY__DISABLED", "p-1,p-2"),
                ("FACEGATE_MODEL_DIR", "/elsewhere"),
                ("UNRELATED", "1"),
            ],
        )
        .unwrap();
        assert_eq!(config.gate.pulse_ms, 900);
        assert_eq!(config.policy.disabled, ["p-1", "p-2"]);
    }

    #[test]
    fn problems_name_the_key_and_the_file() {
        let cases = [
            ("[gate]\npulse_ms = \"fast\"\n", "pulse_ms"),
            ("[gate]\npulse_msec = 5\n", "pulse_msec"),
            ("[policy]\nzone = [0.5, 0.5, 0.9, 0.9]\n", "policy.zone"),
            (
                "[pipeline]\nrestart_min_ms = 0\n",
                "pipeline.restart_min_ms",
            ),
            ("[gate\n", "facegate.toml"),
        ];
        for (text, key) in cases {
            let message = load(text, &[]).unwrap_err().to_string();
            assert!(message.contains(key), "{text:?}: {message}");
            assert!(message.contains("facegate.toml"), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
        let message = load("", &[("FACEGATE_GATE__PULSE_MS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("pulse_ms"), "{message}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let message = ServiceConfig::load_with_env(Path::new("/no/such/facegate.toml"), Vec::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "/no/such/facegate.toml: no such configuration file"
        );
    }

    #[test]
    fn pipeline_variables_come_from_config() {
        let config = load(
            "[gallery]\ndir = \"/g\"\n[pipeline.variables]\ncamera = \"/dev/video2\"\n",
            &[],
        )
        .unwrap();
        let variables = config.pipeline_variables();
        assert_eq!(variables["gallery"], "/g");
        assert_eq!(variables["camera"], "/dev/video2");
        assert_eq!(variables["threshold"], "0.45");
    }
}
