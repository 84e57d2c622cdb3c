// SPDX-License-Identifier: MIT OR Apache-2.0
//! Pipeline descriptions as operators write them (pipelines/*.pipeline): gst-launch syntax,
//! `#` comment lines, and `${name}` variables filled from the configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gst::prelude::*;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum DescriptionError {
    #[error("{file}: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error("{file}: line {line}: unknown variable ${{{name}}} (known: {known})")]
    UnknownVariable {
        file: PathBuf,
        line: usize,
        name: String,
        known: String,
    },
    #[error("{file}: line {line}: unterminated ${{ … }}")]
    Unterminated { file: PathBuf, line: usize },
    #[error("{file}: the description is empty")]
    Empty { file: PathBuf },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// Reads `file` and fills its variables.
pub fn load(file: &Path, variables: &BTreeMap<String, String>) -> Result<String, DescriptionError> {
    let text = std::fs::read_to_string(file).map_err(|e| DescriptionError::Unreadable {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    expand(file, &text, variables)
}

/// Drops comment lines and replaces every `${name}`; the result is one gst-launch description.
pub fn expand(
    file: &Path,
    text: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, DescriptionError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or(DescriptionError::Unterminated {
                file: file.to_path_buf(),
                line: line_number,
            })?;
            let name = &after[..end];
            let value = variables
                .get(name)
                .ok_or_else(|| DescriptionError::UnknownVariable {
                    file: file.to_path_buf(),
                    line: line_number,
                    name: name.to_owned(),
                    known: variables.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push(' ');
    }
    let description = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if description.is_empty() {
        return Err(DescriptionError::Empty {
            file: file.to_path_buf(),
        });
    }
    Ok(description)
}

/// Parses a description into a pipeline; GStreamer's own message names what is wrong.
pub fn parse(file: &Path, description: &str) -> Result<gst::Pipeline, DescriptionError> {
    let invalid = |message: String| DescriptionError::Invalid {
        file: file.to_path_buf(),
        message,
    };
    let element = gst::parse::launch(description).map_err(|e| invalid(e.to_string()))?;
    let pipeline = element
        .downcast::<gst::Pipeline>()
        .map_err(|_| invalid("the description is a single element, not a pipeline".into()))?;
    // The service decides on fgmatch's per-frame message, which fgmatch posts only when asked.
    let matchers: Vec<gstfacegate::FaceMatch> = pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .filter_map(|element| element.downcast::<gstfacegate::FaceMatch>().ok())
        .collect();
    if matchers.is_empty() {
        return Err(invalid(
            "the pipeline has no fgmatch: the gate decides on the faces fgmatch reports".into(),
        ));
    }
    for matcher in &matchers {
        matcher.set_property("post-frames", true);
    }
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables() -> BTreeMap<String, String> {
        [("gallery", "/var/lib/g"), ("threshold", "0.45")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    #[test]
    fn fills_variables_and_drops_comments() {
        let text = "# the gate\nvideotestsrc ! fgmatch gallery=${gallery}\n  threshold=${threshold} ! fakesink\n";
        let expanded = expand(Path::new("p"), text, &variables()).unwrap();
        assert_eq!(
            expanded,
            "videotestsrc ! fgmatch gallery=/var/lib/g threshold=0.45 ! fakesink"
        );
    }

    #[test]
    fn unknown_and_unterminated_variables_are_named_with_their_line() {
        let err = expand(
            Path::new("gate.pipeline"),
            "a\nb ${camera} ! c",
            &variables(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "gate.pipeline: line 2: unknown variable ${camera} (known: gallery, threshold)"
        );
        let err = expand(Path::new("gate.pipeline"), "a ${gallery", &variables()).unwrap_err();
        assert!(matches!(
            err,
            DescriptionError::Unterminated { line: 1, .. }
        ));
        let err = expand(
            Path::new("gate.pipeline"),
            "# only a comment\n",
            &variables(),
        )
        .unwrap_err();
        assert!(matches!(err, DescriptionError::Empty { .. }));
    }

    #[test]
    fn gstreamer_parse_errors_name_the_file() {
        gst::init().unwrap();
        let err = parse(
            Path::new("demo.pipeline"),
            "videotestsrc ! nosuchelement ! fakesink",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("demo.pipeline: ") && message.contains("nosuchelement"),
            "{message}"
        );
        let err = parse(Path::new("demo.pipeline"), "videotestsrc ! fakesink").unwrap_err();
        assert_eq!(
            err.to_string(),
            "demo.pipeline: the pipeline has no fgmatch: the gate decides on the faces fgmatch reports"
        );
        let err = load(Path::new("/no/such.pipeline"), &variables()).unwrap_err();
        assert!(err.to_string().starts_with("/no/such.pipeline: "), "{err}");
    }
}
