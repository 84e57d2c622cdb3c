// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl token` as the enrolment office uses it, on real photos with the real models:
//! keys, a token issued as a QR code PNG and as text, both read back and verified, and the
//! refusals: a changed character, a key no longer trusted, a photo with no face.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn photo(name: &str) -> PathBuf {
    facegate_dev_assets::photo(name).unwrap()
}

fn facegatectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegatectl"))
        .args(args)
        .output()
        .expect("facegatectl runs")
}

fn ok(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: Output) -> String {
    assert!(!output.status.success(), "refused");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_issued_token_reads_back_from_its_png_and_its_text_and_a_changed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted");
    std::fs::create_dir(&trusted).unwrap();
    let said = ok(facegatectl(&[
        "token",
        "keygen",
        "--out",
        path(dir.path()),
        "--name",
        "office-a",
    ]));
    assert!(said.starts_with("key "), "{said}");
    ok(facegatectl(&[
        "token",
        "keygen",
        "--out",
        path(dir.path()),
        "--name",
        "office-b",
    ]));
    for name in ["office-a.pub.pem", "office-b.pub.pem"] {
        std::fs::copy(dir.path().join(name), trusted.join(name)).unwrap();
    }
    let issue = |key: &str, png: &Path| {
        let key = dir.path().join(format!("{key}.key.pem"));
        let face = photo("person_b_1.jpg");
        ok(facegatectl(&[
            "token",
            "issue",
            "--key",
            path(&key),
            "--id",
            "p-000123",
            "--photo",
            path(&face),
            "--valid-days",
            "30",
            "--out",
            path(png),
        ]))
    };
    let png = dir.path().join("b.png");
    let said = issue("office-a", &png);
    assert!(
        said.contains("QR version") && said.contains("cosine"),
        "{said}"
    );

    let show = |file: &Path| {
        let out = ok(facegatectl(&[
            "token",
            "show",
            path(file),
            "--trusted",
            path(&trusted),
        ]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let text = png.with_extension("txt");
    let from_png = show(&png);
    assert_eq!(from_png, show(&text), "the QR code carries the text");
    assert_eq!(from_png["passenger_id"], "p-000123");
    assert_eq!(from_png["expired"], false);
    assert!(from_png.get("template").is_none(), "never printed");
    let days = (from_png["expires_at"].as_i64().unwrap() - from_png["issued_at"].as_i64().unwrap())
        / 86_400;
    assert_eq!(days, 30);

    // One character of the text changed: the signature fails.
    let original = std::fs::read_to_string(&text).unwrap();
    let at = original.len() / 2;
    let swapped = if &original[at..=at] == "0" { "1" } else { "0" };
    let changed = dir.path().join("changed.txt");
    std::fs::write(
        &changed,
        format!("{}{swapped}{}", &original[..at], &original[at + 1..]),
    )
    .unwrap();
    let e = refused(facegatectl(&[
        "token",
        "show",
        path(&changed),
        "--trusted",
        path(&trusted),
    ]));
    assert!(
        e.contains("does not verify") || e.contains("malformed"),
        "{e}"
    );

    // Rotation: a token of the second key verifies; with its key removed, it does not.
    let b_png = dir.path().join("b-by-office-b.png");
    issue("office-b", &b_png);
    show(&b_png);
    std::fs::remove_file(trusted.join("office-b.pub.pem")).unwrap();
    let e = refused(facegatectl(&[
        "token",
        "show",
        path(&b_png),
        "--trusted",
        path(&trusted),
    ]));
    assert!(e.contains("untrusted key"), "{e}");
    show(&png);
}

#[test]
fn a_file_that_is_no_photo_a_missing_key_and_a_second_keygen_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    ok(facegatectl(&["token", "keygen", "--out", path(dir.path())]));
    let key = dir.path().join("facegate-token.key.pem");
    let out = dir.path().join("t.png");
    // Refused as enrolment refuses it (its verdicts are tested with the enrol command).
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, "not a picture\n").unwrap();
    let e = refused(facegatectl(&[
        "token",
        "issue",
        "--key",
        path(&key),
        "--id",
        "p-1",
        "--photo",
        path(&broken),
        "--out",
        path(&out),
    ]));
    assert!(e.contains("broken.jpg"), "{e}");
    assert!(!out.exists(), "no token for a refused photo");
    let e = refused(facegatectl(&[
        "token",
        "issue",
        "--key",
        "/nonexistent.key.pem",
        "--id",
        "p-1",
        "--photo",
        path(&photo("person_b_1.jpg")),
        "--out",
        path(&out),
    ]));
    assert!(e.contains("/nonexistent.key.pem"), "{e}");
    let e = refused(facegatectl(&["token", "keygen", "--out", path(dir.path())]));
    assert!(e.contains("never overwritten"), "{e}");
}
