// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated's configuration: a TOML file plus `FACEGATE_SECTION__KEY` environment overrides
//! (docs/GATE-SERVICE.md lists every key). Every key is typed and checked; a problem is one line
//! naming the key and where it came from (the file, or the environment variable).
//!
//! The file is read strictly: a value must have its key's type (`pulse_ms = 800.5` and
//! `exit_on_eos = "yes"` are refused, nothing is converted). An environment value is typed by
//! its key: a string key (a path, a name, a pipeline variable) takes the value as it is; any
//! other key takes it in TOML syntax, as it would be written in the file (`800`, `true`,
//! `[0.15, 0.0, 0.7, 1.0]`, `["p-1", "p-2"]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::{Table, Value};

use crate::bus::BusConfig;
use crate::fleet::FleetConfig;
use crate::gate::GateConfig;
use crate::journal::JournalConfig;
use crate::policy::{Identification, LivenessConfig, PolicyConfig};

/// Environment variables that override keys start with this and name `SECTION__KEY`.
pub const ENV_PREFIX: &str = "FACEGATE_";
const ENV_SEPARATOR: &str = "__";

/// A configuration problem: one line naming the key and where its value came from.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// In the file (or the file itself: missing, unreadable, not TOML).
    #[error("{}: {}", .file.display(), escape_controls(.message))]
    File { file: PathBuf, message: String },
    /// In an environment override.
    #[error("environment variable {}: {}", escape_controls(.variable), escape_controls(.message))]
    Environment { variable: String, message: String },
}

/// Parser messages quote the offending input, which may hold any character: control characters
/// are escaped so that an error stays one line and cannot forge a line of the log.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    pub ort_library: PathBuf,
    /// The embedders' calibrations (`<model>.toml`), which set the threshold for the gallery's size.
    pub calibration_dir: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: PathBuf::from(facegate_vision::runtime::SYSTEM_MODEL_DIR),
            ort_library: PathBuf::from(facegate_vision::runtime::SYSTEM_ORT_LIBRARY),
            calibration_dir: PathBuf::from(facegate_vision::match_rule::SYSTEM_CALIBRATION_DIR),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// The `[tokens]` section: where passenger tokens are checked against (identification `token`
/// or `token-or-gallery`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// The enrolment offices' public keys (`*.pub.pem`): a token signed by one of them verifies.
    pub trusted_keys: PathBuf,
    /// The offices' signed revocation list, reloaded when it changes.
    pub revocations: PathBuf,
    /// fgqr reads codes on every Nth frame (`${qr_interval}`; 0 in identification `gallery`).
    pub qr_interval: u32,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            trusted_keys: PathBuf::from("/etc/facegate/trusted-keys"),
            revocations: PathBuf::from("/etc/facegate/revoked-tokens"),
            qr_interval: 1,
        }
    }
}

/// The whole service configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub pipeline: PipelineConfig,
    pub models: ModelsConfig,
    pub gallery: GalleryConfig,
    pub tokens: TokensConfig,
    pub policy: PolicyConfig,
    pub liveness: LivenessConfig,
    pub gate: GateConfig,
    pub journal: JournalConfig,
    pub dbus: BusConfig,
    pub fleet: FleetConfig,
}

/// One `FACEGATE_SECTION__KEY` variable: the key path it names and its typed value.
struct Override {
    variable: String,
    path: Vec<String>,
    value: Value,
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
        let in_file = |message: String| ConfigError::File {
            file: file.to_path_buf(),
            message,
        };
        if !file.is_file() {
            return Err(in_file("no such configuration file".into()));
        }
        let text =
            std::fs::read_to_string(file).map_err(|e| in_file(format!("cannot read: {e}")))?;
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| in_file(syntax_error(&text, &e)))?;
        let overrides = overrides(env)?;
        let mut merged = table.clone();
        for o in &overrides {
            apply(&mut merged, o)?;
        }
        let problem = match build(merged) {
            Ok(config) => return Ok(config),
            Err(problem) => problem,
        };
        // Blame the file if it is wrong by itself, else the first variable that makes it wrong.
        build(table.clone()).map_err(in_file)?;
        let mut partial = table;
        for o in &overrides {
            apply(&mut partial, o)?;
            build(partial.clone()).map_err(|message| ConfigError::Environment {
                variable: o.variable.clone(),
                message,
            })?;
        }
        Err(in_file(problem))
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
        if !(1..=1000).contains(&self.tokens.qr_interval) {
            return Err(format!(
                "tokens.qr_interval: must be 1..1000 (got {})",
                self.tokens.qr_interval
            ));
        }
        if self.policy.identification == Identification::Token && self.fleet.follows_gallery() {
            return Err(
                "policy.identification: a gate in token mode keeps no gallery, so it cannot follow the fleet's (leave fleet.gallery_keys unset, or use token-or-gallery)"
                    .into(),
            );
        }
        self.gate.validate().map_err(|e| e.to_string())?;
        self.journal.validate().map_err(|e| e.to_string())?;
        self.fleet.validate()?;
        Ok(())
    }

    /// The `${name}` values a pipeline description may use.
    pub fn pipeline_variables(&self) -> BTreeMap<String, String> {
        let mut variables = self.pipeline.variables.clone();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        variables.insert("models".into(), path(&self.models.dir));
        variables.insert("gallery".into(), path(&self.gallery.dir));
        variables.insert("threshold".into(), self.policy.threshold.to_string());
        variables.insert(
            "max_false_grant_rate".into(),
            self.policy.max_false_grant_rate.to_string(),
        );
        variables.insert("min_margin".into(), self.policy.min_margin.to_string());
        let identification = self.policy.identification;
        variables.insert("identification".into(), identification.to_string());
        variables.insert("trusted_keys".into(), path(&self.tokens.trusted_keys));
        variables.insert("revocations".into(), path(&self.tokens.revocations));
        variables.insert(
            "token_window_ms".into(),
            (self.policy.token_window_s * 1000).to_string(),
        );
        // No code is read where no token is looked for.
        let qr_interval = match identification {
            Identification::Gallery => 0,
            Identification::Token | Identification::TokenOrGallery => self.tokens.qr_interval,
        };
        variables.insert("qr_interval".into(), qr_interval.to_string());
        variables
            .entry("input_size".into())
            .or_insert_with(|| facegate_vision::detector::DEFAULT_INPUT_SIZE.to_string());
        variables
    }
}

/// Deserializes strictly and validates; the message starts with the key (`gate.pulse_ms: …`).
fn build(table: Table) -> Result<ServiceConfig, String> {
    let config: ServiceConfig = serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let message = one_line(e.inner().message());
        if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }
    })?;
    config.validate()?;
    Ok(config)
}

/// The `FACEGATE_SECTION__KEY` variables of `env`, typed by their keys. Other `FACEGATE_`
/// variables (`FACEGATE_MODEL_DIR` and friends configure the elements and tools, not the
/// service) have no `__` and are not read here.
fn overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let defaults = Table::try_from(ServiceConfig::default())
        .expect("the default configuration is representable in TOML");
    let mut found: Vec<Override> = Vec::new();
    for (variable, raw) in env {
        let Some(name) = variable.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !name.contains(ENV_SEPARATOR) {
            continue;
        }
        let path: Vec<String> = name.split(ENV_SEPARATOR).map(str::to_lowercase).collect();
        let refuse = |message: String| ConfigError::Environment {
            variable: variable.clone(),
            message,
        };
        if path.iter().any(String::is_empty) {
            return Err(refuse(format!(
                "not a key: sections and keys are separated by one {ENV_SEPARATOR:?} (FACEGATE_GATE__PULSE_MS)"
            )));
        }
        let key = path.join(".");
        let value = match default_at(&defaults, &path) {
            // An unknown key is left to the schema to refuse, by name.
            None | Some(Value::String(_)) => Value::String(raw),
            Some(typed) => raw.parse::<Value>().map_err(|e| {
                refuse(format!(
                    "{key} takes {} in TOML syntax (like {}), not {raw:?}: {}",
                    kind(typed),
                    example(typed),
                    one_line(e.message())
                ))
            })?,
        };
        found.push(Override {
            variable,
            path,
            value,
        });
    }
    // Deterministic blame whatever order the environment lists them in.
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    Ok(found)
}

fn default_at<'a>(defaults: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut table = defaults;
    for part in parents {
        table = table.get(part)?.as_table()?;
    }
    table.get(last)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A default as it would be written: `f32` defaults without their binary noise (0.15, not
/// 0.15000000596046448).
fn example(value: &Value) -> String {
    match value {
        Value::Float(f) => {
            let short = (*f as f32).to_string();
            if short.contains('.') {
                short
            } else {
                format!("{short}.0")
            }
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(example).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Sets `o`'s key in `table`, creating the sections on the way.
fn apply(table: &mut Table, o: &Override) -> Result<(), ConfigError> {
    let (last, parents) = o.path.split_last().expect("a key path is never empty");
    let mut at = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = at
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        at = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Environment {
                variable: o.variable.clone(),
                message: format!("{} is not a section", o.path[..=depth].join(".")),
            })?;
    }
    at.insert(last.clone(), o.value.clone());
    Ok(())
}

/// A TOML syntax error as one line: where (line, and the key when the line has one) and what.
fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = one_line(error.message());
    let Some(span) = error.span() else {
        return message;
    };
    let offset = span.start.min(text.len());
    let line_number = text[..offset].matches('\n').count() + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or_default();
    let section = text
        .lines()
        .take(line_number - 1)
        .filter_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        })
        .last();
    match line.split_once('=') {
        Some((key, _)) if !line.trim_start().starts_with('[') => {
            let key = key.trim();
            let key = match section {
                Some(section) if !section.is_empty() => format!("{section}.{key}"),
                _ => key.to_string(),
            };
            format!("line {line_number}, {key}: {message}")
        }
        _ => format!("line {line_number}: {message}"),
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
                ("FACEGATE_POLICY__DISABLED", r#"["p-1", "p-2"]"#),
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
    fn every_key_is_settable_from_the_environment() {
        let config = load(
            "",
            &[
                ("FACEGATE_POLICY__ZONE", "[0.1, 0.0, 0.8, 1.0]"),
                ("FACEGATE_POLICY__THRESHOLD", "0.5"),
                ("FACEGATE_PIPELINE__EXIT_ON_EOS", "true"),
                ("FACEGATE_PIPELINE__VARIABLES__PORT", "5000"),
                ("FACEGATE_GATE__PINS__RELAY", "5"),
                ("FACEGATE_GATE__SAFE_STATE", "open"),
                ("FACEGATE_DBUS__BUS", "unix:path=/run/x"),
                ("FACEGATE_DBUS__PRIVILEGED_GROUP", "1234"),
            ],
        )
        .unwrap();
        assert_eq!(config.policy.zone, [0.1, 0.0, 0.8, 1.0]);
        assert_eq!(config.policy.threshold, 0.5);
        assert!(config.pipeline.exit_on_eos);
        assert_eq!(config.pipeline.variables["port"], "5000");
        assert_eq!(config.gate.pins.relay, 5);
        assert_eq!(config.dbus.privileged_group, "1234");
        // Every key of the defaults has a variable that sets it: the list the docs give.
        let defaults = Table::try_from(ServiceConfig::default()).unwrap();
        let mut keys = Vec::new();
        fn walk(table: &Table, prefix: &str, keys: &mut Vec<String>) {
            for (key, value) in table {
                let path = format!("{prefix}{key}");
                match value {
                    Value::Table(inner) => walk(inner, &format!("{path}."), keys),
                    _ => keys.push(path),
                }
            }
        }
        walk(&defaults, "", &mut keys);
        assert!(keys.contains(&"policy.zone".to_string()), "{keys:?}");
        for key in keys {
            let variable = format!("FACEGATE_{}", key.replace('.', "__").to_uppercase());
            let value = default_at(
                &defaults,
                &key.split('.').map(String::from).collect::<Vec<_>>(),
            )
            .unwrap();
            let raw = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            load("", &[(&variable, &raw)]).unwrap_or_else(|e| panic!("{variable}={raw}: {e}"));
        }
    }

    #[test]
    fn wrong_types_in_the_file_are_refused_by_key() {
        let cases = [
            ("[gate]\npulse_ms = 800.5\n", "gate.pulse_ms"),
            (
                "[pipeline]\nexit_on_eos = \"yes\"\n",
                "pipeline.exit_on_eos",
            ),
            (
                "[policy]\nzone = [0.1, 0.0, 0.5, 1.0, 0.2]\n",
                "policy.zone",
            ),
            ("[policy]\ndisabled = [1, 2]\n", "policy.disabled"),
            ("[gate]\npulse_ms = 99999999999999999999\n", "gate.pulse_ms"),
            ("[policy]\nthreshold = -0.5\n", "policy.threshold"),
        ];
        for (text, key) in cases {
            let message = load(text, &[]).unwrap_err().to_string();
            assert!(message.contains(key), "{text:?}: {message}");
            assert!(message.contains("facegate.toml: "), "{message}");
            assert!(!message.contains("low_confidence"), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn environment_problems_name_the_variable() {
        let cases = [
            ("FACEGATE_GATE__PULSE_MSEC", "5", "pulse_msec"),
            ("FACEGATE_GATE__PULSE_MS", "800.5", "gate.pulse_ms"),
            (
                "FACEGATE_PIPELINE__EXIT_ON_EOS",
                "yes",
                "pipeline.exit_on_eos",
            ),
            (
                "FACEGATE_POLICY__ZONE",
                "[0.1, 0.0, 0.5, 1.0, 0.2]",
                "policy.zone",
            ),
            ("FACEGATE_POLICY__THRESHOLD", "0", "policy.threshold"),
            ("FACEGATE_NOSUCH__KEY", "1", "nosuch"),
        ];
        for (variable, value, key) in cases {
            let message = load("[gate]\npulse_ms = 500\n", &[(variable, value)])
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!("environment variable {variable}: ")),
                "{variable}: {message}"
            );
            assert!(message.contains(key), "{variable}: {message}");
            assert!(!message.contains("facegate.toml"), "{variable}: {message}");
        }
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
        assert_eq!(variables["max_false_grant_rate"], "0.0001");
        assert_eq!(variables["min_margin"], "0.05");
    }

    #[test]
    fn an_error_quoting_control_characters_stays_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("facegate.toml");
        std::fs::write(&file, "[gate]\n# comment \u{1}\r forged\n").unwrap();
        let message = ServiceConfig::load_with_env(&file, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(!message.contains(['\n', '\r', '\u{1}']), "{message:?}");
        assert!(message.starts_with(&*file.to_string_lossy()), "{message}");
    }
}
