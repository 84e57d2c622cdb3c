// SPDX-License-Identifier: MIT OR Apache-2.0
//! Passenger tokens end to end: the real facegated in `policy.identification = "token"` on a
//! private D-Bus, fed token walk-ups made with GStreamer's compositor (a passenger's photo and
//! a phone showing a QR code beside it) through the gate's real elements: fgqr reads the code,
//! fgmatch verifies it and compares the face 1:1, the service decides and journals.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use facegate_devtools::gate_rig::{Announced, GateRig, RigFiles, follow};
use facegate_devtools::token_scene::{self, Segment};
use facegate_token::{Claims, RevocationList};
use facegated::journal::Passage;

/// The service tests play video in real time; two at once on two cores would starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Two seconds of a walk-up, two seconds of nobody between two (longer than the token window,
/// so each walk-up has only its own token).
const WALKUP: u32 = 2 * token_scene::FPS;
const GAP: u32 = 2 * token_scene::FPS;

fn files() -> RigFiles {
    RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("repository files")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An enrolment office: its key pair, and the tokens it issues as QR code phone panels.
struct Office {
    key: SigningKey,
    key_file: PathBuf,
    public: PathBuf,
}

impl Office {
    fn new(dir: &Path, name: &str) -> Office {
        let (key_file, public, _) = facegate_token::generate_key(dir, name).unwrap();
        Office {
            key: facegate_token::load_signing_key(&key_file).unwrap(),
            key_file,
            public,
        }
    }
}

/// The scene's files: photos, the offices' tokens, the phone panels.
struct Scene {
    dir: PathBuf,
    photos: PathBuf,
}

impl Scene {
    fn photo(&self, name: &str) -> PathBuf {
        self.photos.join(name)
    }

    /// Issues `passenger`'s token from `photo` with `facegatectl token issue`'s own code (the
    /// gate's elements enrol it), returns its text.
    fn issue(&self, office: &Office, passenger: &str, photo: &str) -> String {
        facegatectl::init().expect("GStreamer initialises");
        let png = self
            .dir
            .join(format!("{passenger}-{}.png", name_of(&office.public)));
        facegatectl::token::issue(
            &office.key_file,
            passenger,
            &self.photo(photo),
            30,
            &png,
            &files().models(),
        )
        .unwrap();
        std::fs::read_to_string(png.with_extension("txt"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `text` as a QR code on a phone held up to the camera.
    fn phone(&self, name: &str, text: &str) -> PathBuf {
        let code = self.dir.join(format!("{name}-code.png"));
        facegatectl::token::write_code_png(text, &code).unwrap();
        let panel = self.dir.join(format!("{name}-phone.png"));
        token_scene::phone_panel(&code, &panel, 6.0).unwrap();
        panel
    }
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The rig in token mode, playing `segments`, trusting the public keys in `trusted`.
fn token_rig(scratch: &Path, segments: &[Segment], trusted: &Path) -> GateRig {
    let mut rig = GateRig::new(files(), scratch, &[]).expect("rig starts");
    let pipeline = scratch.join("token-walkups.pipeline");
    std::fs::write(
        &pipeline,
        format!(
            "{} ! identity sync=true ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
             ! fgdetect model=${{models}}/facegate_yunet_2023mar.onnx input-size=${{input_size}} \
             ! fgtrack ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
             ! fgembed model=${{models}}/facegate_sface_2021dec.onnx ! fgqr interval=${{qr_interval}} \
             ! fgmatch name=match identification=${{identification}} trusted-keys=${{trusted_keys}} \
               revocations=${{revocations}} token-window=${{token_window_ms}} \
               min-threshold=${{threshold}} max-false-grant-rate=${{max_false_grant_rate}} \
               min-margin=${{min_margin}} poll-interval=1000 \
             ! fakesink sync=true\n",
            token_scene::sources(segments)
        ),
    )
    .unwrap();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    rig.extra_env.extend([
        ("FACEGATE_PIPELINE__FILE".into(), path(&pipeline)),
        ("FACEGATE_POLICY__IDENTIFICATION".into(), "token".into()),
        // A token counts for a second after its code was last read: each walk-up its own.
        ("FACEGATE_POLICY__TOKEN_WINDOW_S".into(), "1".into()),
        ("FACEGATE_TOKENS__TRUSTED_KEYS".into(), path(trusted)),
        (
            "FACEGATE_TOKENS__REVOCATIONS".into(),
            path(&scratch.join("revoked-tokens")),
        ),
    ]);
    rig
}

fn walkup(face: Option<PathBuf>, code: Option<PathBuf>) -> Vec<Segment> {
    vec![
        Segment {
            face,
            code,
            frames: WALKUP,
        },
        Segment {
            face: None,
            code: None,
            frames: GAP,
        },
    ]
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
    let (office_dir, trusted) = (
        scratch.path().join("office"),
        scratch.path().join("trusted"),
    );
    std::fs::create_dir_all(&office_dir).unwrap();
    std::fs::create_dir_all(&trusted).unwrap();
    // Key rotation: the gate trusts the old key and the new one.
    let (old, new) = (
        Office::new(&office_dir, "old"),
        Office::new(&office_dir, "new"),
    );
    for office in [&old, &new] {
        std::fs::copy(&office.public, trusted.join(name_of(&office.public))).unwrap();
    }
    let scene = Scene {
        dir: scratch.path().to_path_buf(),
        photos: files().photos,
    };
    let token_a = scene.issue(&old, "P-A", "person_a_1.jpg");
    let token_b = scene.issue(&new, "P-B", "person_b_1.jpg");
    // One character changed: still Base45, another payload, a signature that does not verify.
    let mut tampered = token_b.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Expired yesterday, signed by a trusted key.
    let expired = {
        let valid = facegate_token::parse_text(
            &token_b,
            &facegate_token::TrustedKeys::load(&trusted).unwrap(),
        )
        .unwrap();
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
    let rig = token_rig(scratch.path(), &segments, &trusted);
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
        facegate_token::parse_text(text, &facegate_token::TrustedKeys::load(&trusted).unwrap())
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
    let (office_dir, trusted) = (
        scratch.path().join("office"),
        scratch.path().join("trusted"),
    );
    std::fs::create_dir_all(&office_dir).unwrap();
    std::fs::create_dir_all(&trusted).unwrap();
    let (kept, removed) = (
        Office::new(&office_dir, "kept"),
        Office::new(&office_dir, "removed"),
    );
    // Only the kept key is trusted: the removed key's tokens no longer verify.
    std::fs::copy(&kept.public, trusted.join(name_of(&kept.public))).unwrap();
    let scene = Scene {
        dir: scratch.path().to_path_buf(),
        photos: files().photos,
    };
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
    let rig = token_rig(scratch.path(), &segments, &trusted);
    let list_file = scratch.path().join("revoked-tokens");
    let revoked_b = facegate_token::parse_text(
        &token_b,
        &facegate_token::TrustedKeys::load(&trusted).unwrap(),
    )
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
