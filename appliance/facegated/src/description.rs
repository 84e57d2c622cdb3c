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
    // gst_parse_launch only warns (GLib) about an out-of-range value and leaves the default.
    check_our_properties(description).map_err(invalid)?;
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

/// Refuses a pipeline without fglive when `[liveness] required` says a grant needs its verdict:
/// without it every face would wait for a verdict that never comes, and nobody would pass.
pub fn require_liveness(file: &Path, pipeline: &gst::Pipeline) -> Result<(), DescriptionError> {
    let judged = pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .any(|element| element.is::<gstfacegate::FaceLive>());
    if judged {
        return Ok(());
    }
    Err(DescriptionError::Invalid {
        file: file.to_path_buf(),
        message: "the pipeline has no fglive, but liveness.required is true: put `! fglive` after fgtrack (or set liveness.required = false, and a photo of a passenger can open the gate)".into(),
    })
}

/// Refuses a `name=value` of one of our elements (plugin `facegate`) that the property would not
/// take as given: a value it cannot read, or a number outside its range.
fn check_our_properties(description: &str) -> Result<(), String> {
    let mut element: Option<(String, gst::Element)> = None;
    let mut element_expected = true;
    for word in words(description) {
        if word == "!" {
            element_expected = true;
            element = None;
            continue;
        }
        let starts_element = std::mem::take(&mut element_expected);
        match word.split_once('=') {
            None if starts_element => element = ours(&word),
            Some((key, value)) if !starts_element => {
                if let Some((factory, instance)) = &element {
                    check_property(factory, instance, key, value)?;
                }
            }
            // A caps filter, or a reference to a named element ("t." / "t.src").
            _ => element = None,
        }
    }
    Ok(())
}

/// A new instance of `factory` when it is one of our elements, to read its properties from.
fn ours(factory: &str) -> Option<(String, gst::Element)> {
    let found = gst::ElementFactory::find(factory)?;
    if found.plugin_name().as_deref() != Some("facegate") {
        return None;
    }
    let instance = found.create().build().ok()?;
    Some((factory.to_owned(), instance))
}

fn check_property(
    factory: &str,
    instance: &gst::Element,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let problem = |problem: String| format!("{factory}: property {key}: {problem}");
    let Some(pspec) = instance.find_property(key) else {
        return Err(problem(format!("{factory} has no property {key}")));
    };
    let parsed = gst::glib::Value::deserialize_with_pspec(value, &pspec)
        .map_err(|_| problem(format!("cannot read {value:?} as a {}", pspec.value_type())))?;
    match out_of_range(&pspec, &parsed) {
        Some(range) => Err(problem(format!("{value} is outside {range}"))),
        None => Ok(()),
    }
}

/// The range `value` is outside of, for a numeric property.
fn out_of_range(pspec: &gst::glib::ParamSpec, value: &gst::glib::Value) -> Option<String> {
    use gst::glib::{
        ParamSpecDouble, ParamSpecFloat, ParamSpecInt, ParamSpecInt64, ParamSpecUInt,
        ParamSpecUInt64,
    };
    macro_rules! check {
        ($($spec:ty => $value:ty),*) => {
            $(
                if let Some(spec) = pspec.downcast_ref::<$spec>() {
                    let number = value.get::<$value>().ok()?;
                    let (min, max) = (spec.minimum(), spec.maximum());
                    return (!(min..=max).contains(&number)).then(|| format!("{min}..={max}"));
                }
            )*
        };
    }
    check!(
        ParamSpecUInt => u32, ParamSpecInt => i32, ParamSpecUInt64 => u64,
        ParamSpecInt64 => i64, ParamSpecDouble => f64, ParamSpecFloat => f32
    );
    None
}

/// The words of a description, split at white space outside double quotes, quotes removed.
fn words(description: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = description.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => word.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
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

    #[test]
    fn an_out_of_range_property_of_our_elements_is_refused_naming_element_and_property() {
        gst::init().unwrap();
        gstfacegate::plugin_register_static().ok();
        let refused = |description: &str| {
            parse(Path::new("gate.pipeline"), description)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("videotestsrc ! fgmatch gallery=/g top-k=0 ! fakesink"),
            "gate.pipeline: fgmatch: property top-k: 0 is outside 1..=100"
        );
        assert_eq!(
            refused("videotestsrc ! fgmatch name=match threshold=1.5 ! fakesink"),
            "gate.pipeline: fgmatch: property threshold: 1.5 is outside -1..=1"
        );
        let unreadable = refused("videotestsrc ! fgdetect input-size=big ! fgmatch ! fakesink");
        assert!(
            unreadable
                .starts_with("gate.pipeline: fgdetect: property input-size: cannot read \"big\""),
            "{unreadable}"
        );
        // Caps, quoted values and other plugins' elements are left to GStreamer.
        parse(
            Path::new("gate.pipeline"),
            "videotestsrc ! video/x-raw,format={I420,NV12},width=640 ! queue max-size-time=0 \
             ! fgmatch gallery=\"/a gallery\" top-k=100 threshold=-1 ! fakesink",
        )
        .unwrap();
    }

    #[test]
    fn a_pipeline_without_fglive_is_refused_when_liveness_is_required() {
        gst::init().unwrap();
        gstfacegate::plugin_register_static().ok();
        let file = Path::new("gate.pipeline");
        let without = parse(file, "videotestsrc ! fgtrack ! fgmatch ! fakesink").unwrap();
        let message = require_liveness(file, &without).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "gate.pipeline: the pipeline has no fglive, but liveness.required is true"
            ),
            "{message}"
        );
        let with = parse(file, "videotestsrc ! fgtrack ! fglive ! fgmatch ! fakesink").unwrap();
        require_liveness(file, &with).unwrap();
    }
}
