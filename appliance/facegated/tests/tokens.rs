// SPDX-License-Identifier: MIT OR Apache-2.0
//! Passenger tokens end to end: the real facegated in `policy.identification = "token"` on a
//! private D-Bus, fed token walk-ups made with GStreamer's compositor (a passenger's photo and
//! a phone showing a QR code beside it) through the gate's real elements: fgqr reads the code,
//! fgmatch verifies it and compares the face 1:1, the service decides and journals.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use facegate_devtools::gate_rig::{Announced, GateRig, RigFiles, follow};
use facegate_devtools::token_scene::{self, Office, Segment, walkup};
use facegate_meta::Identification;
use facegate_token::{Claims, RevocationList};
use facegated::journal::Passage;

/// The service tests play video in real time; two at once on two cores would starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn files() -> RigFiles {
    RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("repository files")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The scene's files: the offices' keys and tokens, the gate's trusted keys, the phone panels.
struct Scene {
    dir: PathBuf,
    /// The gate's `tokens.trusted_keys`.
    trusted: PathBuf,
    files: RigFiles,
}

impl Scene {
    fn new(dir: &Path) -> Scene {
        let trusted = dir.join("trusted");
        std::fs::create_dir_all(dir.join("office")).unwrap();
        std::fs::create_dir_all(&trusted).unwrap();
        Scene {
            dir: dir.to_path_buf(),
            trusted,
            files: files(),
        }
    }

    /// An office's key pair, trusted by the gate or not.
    fn office(&self, name: &str, trusted: bool) -> Office {
        let office = Office::new(&self.dir.join("office"), name).unwrap();
        if trusted {
            office.trust(&self.trusted).unwrap();
        }
        office
    }

    fn trusted_keys(&self) -> facegate_token::TrustedKeys {
        facegate_token::TrustedKeys::load(&self.trusted).unwrap()
    }

    fn photo(&self, name: &str) -> PathBuf {
        self.files.photos.join(name)
    }

    fn issue(&self, office: &Office, passenger: &str, photo: &str) -> String {
        office
            .issue(passenger, &self.photo(photo), &self.dir, &self.files)
            .unwrap()
    }

    fn phone(&self, name: &str, text: &str) -> PathBuf {
        token_scene::phone(&self.dir, name, text).unwrap()
    }

    /// The rig in token mode playing `segments`; a token counts for a second after its code was
    /// last read, so each walk-up has its own.
    fn rig(&self, segments: &[Segment]) -> GateRig {
        self.rig_with(segments, Identification::Token, &[])
    }

    fn rig_with(
        &self,
        segments: &[Segment],
        identification: Identification,
        enrolled: &[(&str, &str, &str)],
    ) -> GateRig {
        token_scene::token_rig(
            files(),
            &self.dir,
            segments,
            &self.trusted,
            1,
            identification,
            enrolled,
        )
        .expect("rig starts")
    }
}

/// Runs facegated to the end of the scene, `on_decision` hearing each decision announced;
/// returns the journal.
fn run(rig: &GateRig, mut on_decision: impl FnMut(&Announced)) -> Vec<Passage> {
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let followed = runtime.block_on(async {
        let run = follow(rig, &mut child, |decision| {
            on_decision(&decision);
            Ok(ControlFlow::Continue(()))
        });
        tokio::time::timeout(Duration::from_secs(180), run).await
    });
    let followed = followed
        .unwrap_or_else(|_| panic!("facegated ran for 3 minutes; log: {}", rig.log_text()))
        .unwrap_or_else(|e| panic!("{e:#}; log: {}", rig.log_text()));
    assert!(
        followed.status.success(),
        "facegated exits 0 at the end of the scene; log: {}",
        rig.log_text()
    );
    rig.passages().unwrap()
}

fn summary(passages: &[Passage]) -> Vec<String> {
    passages
        .iter()
        .map(|p| match (&p.reason, &p.identity) {
            (None, Some(id)) => format!("granted {id}"),
            (Some(reason), _) => format!("denied {reason}"),
            (None, None) => "granted nobody".to_owned(),
        })
        .collect()
}

#[test]
fn each_token_walkup_gets_the_decision_its_token_and_face_call_for() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let scene = Scene::new(scratch.path());
    // Key rotation: the gate trusts the old key and the new one.
    let (old, new) = (scene.office("old", true), scene.office("new", true));
    let token_a = scene.issue(&old, "P-A", "person_a_1.jpg");
    let token_b = scene.issue(&new, "P-B", "person_b_1.jpg");
    // One character changed: still Base45, another payload, a signature that does not verify.
    let mut tampered = token_b.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Expired yesterday, signed by a trusted key.
    let expired = {
        let valid = facegate_token::parse_text(&token_b, &scene.trusted_keys()).unwrap();
        facegate_token::issue(
            &Claims {
                token_id: [0xee; 16],
                issued_at: now() - 10 * 86_400,
                expires_at: now() - 86_400,
                ..valid.claims
            },
            &new.key,
        )
        .unwrap()
    };

    let segments: Vec<Segment> = [
        // Own token, own face (another photo than the token's): granted.
        walkup(
            Some(scene.photo("person_a_2.jpg")),
            Some(scene.phone("a", &token_a)),
        ),
        // P-A's valid token shown by somebody else.
        walkup(
            Some(scene.photo("obama.jpg")),
            Some(scene.phone("a-by-obama", &token_a)),
        ),
        walkup(
            Some(scene.photo("person_b_2.jpg")),
            Some(scene.phone("tampered", &tampered)),
        ),
        walkup(
            Some(scene.photo("person_b_2.jpg")),
            Some(scene.phone("expired", &expired)),
        ),
        // The new key's token: granted beside the old key's.
        walkup(
            Some(scene.photo("person_b_2.jpg")),
            Some(scene.phone("b", &token_b)),
        ),
        // A face without a token, then a token without a face: nothing.
        walkup(Some(scene.photo("biden.jpg")), None),
        walkup(None, Some(scene.phone("b-alone", &token_b))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let rig = scene.rig(&segments);
    let mut heard = Vec::new();
    let passages = run(&rig, |decision| heard.push(decision.clone()));

    assert_eq!(
        summary(&passages),
        [
            "granted P-A",
            "denied token-mismatch",
            "denied token-invalid",
            "denied token-expired",
            "granted P-B",
        ],
        "log: {}",
        rig.log_text()
    );
    assert_eq!(heard.len(), passages.len(), "{heard:?}");
    // The journal keeps whom and which token, never a template.
    let ids = |text: &str| {
        facegate_token::parse_text(text, &scene.trusted_keys())
            .unwrap()
            .claims
    };
    let hex = |claims: Claims| facegate_token::hex(&claims.token_id);
    assert_eq!(
        passages[0].token.as_deref(),
        Some(hex(ids(&token_a)).as_str())
    );
    assert_eq!(
        passages[1].token.as_deref(),
        Some(hex(ids(&token_a)).as_str())
    );
    assert_eq!(
        passages[2].token, None,
        "a tampered token has no id to trust"
    );
    assert_eq!(
        passages[4].token.as_deref(),
        Some(hex(ids(&token_b)).as_str())
    );
    let journal = std::fs::read(&rig.journal).unwrap();
    let template = ids(&token_a).template.values;
    let as_bytes: Vec<u8> = template.iter().map(|&v| v as u8).collect();
    assert!(
        !journal
            .windows(as_bytes.len())
            .any(|w| w == as_bytes.as_slice()),
        "the journal holds no template"
    );
    assert!(
        !rig.log_text().contains(&token_a[..40]),
        "the log holds no token text"
    );
}

#[test]
fn a_token_revoked_while_the_gate_runs_is_denied_and_a_removed_key_s_tokens_are_invalid() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let scene = Scene::new(scratch.path());
    // Only the kept key is trusted: the removed key's tokens no longer verify.
    let (kept, removed) = (scene.office("kept", true), scene.office("removed", false));
    let token_a = scene.issue(&kept, "P-A", "person_a_1.jpg");
    let token_b = scene.issue(&kept, "P-B", "person_b_1.jpg");
    let token_old = scene.issue(&removed, "P-B", "person_b_1.jpg");
    let segments: Vec<Segment> = [
        walkup(
            Some(scene.photo("person_a_2.jpg")),
            Some(scene.phone("a", &token_a)),
        ),
        walkup(
            Some(scene.photo("person_b_2.jpg")),
            Some(scene.phone("old", &token_old)),
        ),
        // Time for the list written after the first grant to be read (polled every second).
        vec![Segment {
            face: None,
            code: None,
            frames: 3 * token_scene::FPS,
        }],
        walkup(
            Some(scene.photo("person_b_2.jpg")),
            Some(scene.phone("b", &token_b)),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let rig = scene.rig(&segments);
    let list_file = scratch.path().join("revoked-tokens");
    let revoked_b = facegate_token::parse_text(&token_b, &scene.trusted_keys())
        .unwrap()
        .claims
        .token_id;
    let passages = run(&rig, |decision| {
        if matches!(decision, Announced::Granted { .. }) && !list_file.exists() {
            let list = RevocationList {
                issued_at: now(),
                token_ids: [revoked_b].into(),
                passenger_ids: Default::default(),
            };
            std::fs::write(&list_file, list.sign(&kept.key).unwrap()).unwrap();
        }
    });
    assert_eq!(
        summary(&passages),
        [
            "granted P-A",
            "denied token-invalid",
            "denied token-revoked"
        ],
        "log: {}",
        rig.log_text()
    );
    assert!(
        rig.log_text().contains("revocation list"),
        "the reload is logged: {}",
        rig.log_text()
    );
}

#[test]
fn token_or_gallery_decides_by_the_token_shown_and_else_by_the_gallery() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let scene = Scene::new(scratch.path());
    let office = scene.office("office", true);
    // P-A is not in the gallery: only their token lets them through.
    let token_a = scene.issue(&office, "P-A", "person_a_1.jpg");
    let segments: Vec<Segment> = [
        // Enrolled, no token: the gallery decides.
        walkup(Some(scene.photo("person_b_2.jpg")), None),
        // A stranger with P-A's token: the token decides, whatever the gallery holds.
        walkup(
            Some(scene.photo("impostor_1.jpg")),
            Some(scene.phone("a-by-stranger", &token_a)),
        ),
        walkup(
            Some(scene.photo("person_a_2.jpg")),
            Some(scene.phone("a", &token_a)),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let rig = scene.rig_with(
        &segments,
        Identification::TokenOrGallery,
        &[("person-b", "Person B", "person_b_1.jpg")],
    );
    let passages = run(&rig, |_| {});
    assert_eq!(
        summary(&passages),
        ["granted person-b", "denied token-mismatch", "granted P-A"],
        "log: {}",
        rig.log_text()
    );
    assert_eq!(passages[0].token, None, "decided by the gallery");
    assert!(passages[1].token.is_some() && passages[2].token.is_some());
}
