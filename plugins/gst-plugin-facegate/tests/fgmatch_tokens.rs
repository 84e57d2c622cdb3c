// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgmatch with `identification=token` in a harness, on buffers carrying a tracked face with an
//! embedding and the text of a QR code (as fgembed and fgqr leave them): a valid token makes its
//! passenger the face's only candidate, scored 1:1; a refused token is reported with its reason;
//! the code's text is taken off the buffer; a token counts for `token-window` only; no gallery
//! is needed, trusted keys are.

mod common;

use std::path::Path;

use facegate_meta::{FrameMessage, TokenVerdict, Track};
use facegate_token::Claims;
use gst::prelude::*;
use gst_check::Harness;

const MODEL: &str = "facegate_sface_2021dec@sha256:0102030405060708";
const PREFIX: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn unit(seed: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..128u32)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// An office key trusted in `dir/trusted`, and P-1's token for the face `unit(1)`.
fn office(dir: &Path) -> (std::path::PathBuf, String) {
    let (key, public, _) = facegate_token::generate_key(dir, "office").unwrap();
    let trusted = dir.join("trusted");
    std::fs::create_dir(&trusted).unwrap();
    std::fs::copy(&public, trusted.join("office.pub.pem")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = Claims {
        token_id: [0x42; 16],
        passenger_id: "P-1".into(),
        issued_at: now - 60,
        expires_at: now + 3600,
        model_sha256_prefix: PREFIX,
        template: facegate_token::quantise(&unit(1)),
    };
    let signing = facegate_token::load_signing_key(&key).unwrap();
    (trusted, facegate_token::issue(&claims, &signing).unwrap())
}

fn matcher(trusted: &Path) -> (Harness, gst::Bus) {
    let (mut h, bus) = common::harness_parse(&format!(
        "fgmatch identification=token trusted-keys=\"{}\" threshold=0.5 token-window=1000 post-frames=true",
        trusted.display()
    ));
    h.set_src_caps(common::blank_frame("I420", 640, 480).caps);
    (h, bus)
}

/// Frame `n` (40 ms apart) with one tracked face embedded as `face`, and `code` read on it.
fn push(h: &mut Harness, n: u64, face: &[f32], code: Option<&str>) -> gst::Buffer {
    let mut buffer = common::blank_frame("I420", 640, 480)
        .buffer_at(Some(gst::ClockTime::from_mseconds(40 * n)));
    let b = buffer.get_mut().unwrap();
    facegate_meta::add_face(
        b,
        (200, 100, 160, 200),
        0.9,
        &[[250.0, 180.0]; 5],
        "yunet@test",
    );
    facegate_meta::for_each_face_mut(b, |f| {
        f.set_track(Track {
            id: 1,
            age: n as u32,
        });
        f.set_embedding(MODEL, face);
    });
    if let Some(text) = code {
        facegate_meta::add_code(b, (400, 100, 200, 200), text);
    }
    common::push_pull(h, buffer)
}

fn last_frame(bus: &gst::Bus) -> FrameMessage {
    common::element_messages(bus, facegate_meta::FRAME_MESSAGE)
        .iter()
        .map(|s| FrameMessage::from_structure(s).unwrap())
        .next_back()
        .expect("a facegate-frame message")
}

#[test]
fn a_valid_token_makes_its_passenger_the_face_s_only_candidate_scored_1_to_1() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, token) = office(dir.path());
    let (mut h, bus) = matcher(&trusted);

    let out = push(&mut h, 0, &unit(1), Some(&token));
    assert_eq!(
        facegate_meta::codes(&out).count(),
        0,
        "the code's text is taken off the buffer"
    );
    let frame = last_frame(&bus);
    let sighting = frame.token.expect("the token shown");
    assert_eq!(sighting.verdict, TokenVerdict::Valid);
    assert_eq!(sighting.passenger_id.as_deref(), Some("P-1"));
    assert_eq!(
        sighting.token_id.as_deref(),
        Some("42424242424242424242424242424242")
    );
    let face = &frame.faces[0];
    let best = face.best.as_ref().expect("the token's passenger");
    assert_eq!(best.id, "P-1");
    assert!(best.similarity > 0.999, "{}", best.similarity);
    assert!(face.matched && face.runner_up_similarity.is_none());
    assert_eq!(frame.gallery_size, 0, "no gallery");
    let matched = common::faces(&out)
        .remove(0)
        .matched
        .expect("a facegate-match param");
    assert_eq!(matched.id, "P-1");

    // Another face with the same token: scored low, not matched.
    push(&mut h, 1, &unit(2), Some(&token));
    let face = &last_frame(&bus).faces[0];
    assert!(!face.matched);
    assert!(face.best.as_ref().unwrap().similarity < 0.5);

    // Without the code for longer than token-window (1 s): no token any more.
    push(&mut h, 20, &unit(1), None);
    assert!(last_frame(&bus).token.is_some(), "within the window");
    push(&mut h, 40, &unit(1), None);
    let frame = last_frame(&bus);
    assert!(
        frame.token.is_none() && frame.faces[0].best.is_none(),
        "{frame:?}"
    );
}

#[test]
fn a_changed_token_is_refused_with_its_reason_and_matches_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, token) = office(dir.path());
    let (mut h, bus) = matcher(&trusted);
    let mut changed = token.into_bytes();
    let at = changed.len() - 10;
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    push(
        &mut h,
        0,
        &unit(1),
        Some(std::str::from_utf8(&changed).unwrap()),
    );
    let frame = last_frame(&bus);
    let sighting = frame.token.expect("the token shown");
    assert_eq!(sighting.verdict, TokenVerdict::Invalid);
    assert!(
        sighting
            .reason
            .is_some_and(|r| !r.is_empty() && !r.contains('\n'))
    );
    assert!(frame.faces[0].best.is_none() && !frame.faces[0].matched);
}

#[test]
fn token_mode_needs_trusted_keys_and_no_gallery() {
    common::init();
    let without_keys = common::element("fgmatch", &[]);
    without_keys.set_property_from_str("identification", "token");
    let message = common::start_error(&without_keys);
    assert!(message.contains("trusted-keys"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    let (trusted, _) = office(dir.path());
    let element = common::element("fgmatch", &[]);
    element.set_property_from_str("identification", "token");
    element.set_property("trusted-keys", trusted.to_str().unwrap());
    element
        .set_state(gst::State::Paused)
        .expect("starts without a gallery");
    element.set_state(gst::State::Null).unwrap();
}
