// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate's desk for tokens shown to its camera: what a QR reader returned, when, and what
//! [`admit`] made of it, for as long as the token counts as shown (the window after its code
//! was last read). Plain Rust: fgmatch hands it each frame's codes and its running time.
//!
//! Nothing biometric outlives the window: the token's text and its decoded template are held
//! only while it is shown, and overwritten with zeros when they are dropped (crate zeroize), so
//! a later core dump or reused page does not hold them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use zeroize::Zeroize;

use crate::admission::{Refused, admit};
use crate::keys::TrustedKeys;
use crate::payload::{Claims, SignedToken};
use crate::revocation::RevocationList;
use crate::{TokenError, hex};

/// How long a token stays shown after its code was last read, in milliseconds: long enough for
/// a passenger to lower the phone and step up, short enough not to serve the next one.
pub const DEFAULT_TOKEN_WINDOW_MS: u32 = 10_000;

/// A token that passed [`admit`], with its template decoded for comparison.
pub struct Admitted {
    token: SignedToken,
    template: Vec<f32>,
}

impl Admitted {
    pub fn claims(&self) -> &Claims {
        &self.token.claims
    }

    /// Cosine similarity of a unit-length `embedding` to the template; -1 (no match) when the
    /// dimensions differ.
    pub fn similarity(&self, embedding: &[f32]) -> f64 {
        if embedding.len() != self.template.len() {
            return -1.0;
        }
        self.template
            .iter()
            .zip(embedding)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.template.zeroize();
        self.token.claims.template.values.zeroize();
    }
}

/// What the token shown within the window is.
pub enum Shown<'a> {
    Admitted(&'a Admitted),
    Refused(&'a Refused),
}

/// The token last shown.
struct Sighting {
    text: String,
    /// Running time its code was last read.
    last_read: Duration,
    /// What admit made of it, for the embedder it was judged for; cleared when the revocation
    /// list changes.
    judged: Option<([u8; 8], Result<Admitted, Refused>)>,
}

impl Drop for Sighting {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

/// The revocation list file and what was last read from it.
struct Revocations {
    path: PathBuf,
    /// Modification time and length of the file last read (None: absent).
    seen: Option<(SystemTime, u64)>,
    list: Option<RevocationList>,
}

pub struct TokenDesk {
    trusted: TrustedKeys,
    revocations: Option<Revocations>,
    window: Duration,
    shown: Option<Sighting>,
}

impl TokenDesk {
    /// Loads the trusted keys from `trusted_dir` and, when given, the revocation list (a list
    /// that does not exist yet revokes nothing until it appears; one that exists must verify).
    pub fn open(
        trusted_dir: &std::path::Path,
        revocations: Option<PathBuf>,
        window: Duration,
    ) -> Result<TokenDesk, TokenError> {
        let trusted = TrustedKeys::load(trusted_dir)?;
        let mut desk = TokenDesk {
            trusted,
            revocations: revocations.map(|path| Revocations {
                path,
                seen: None,
                list: None,
            }),
            window,
            shown: None,
        };
        if let Some(Err(e)) = desk.reload_revocations() {
            return Err(e);
        }
        Ok(desk)
    }

    /// Rereads the revocation list when its file changed: `Some(Ok(what it holds))` when it was
    /// reloaded, `Some(Err)` when it could not be (the last good list stays in force; a list
    /// that disappears stays in force too, so deleting the file never un-revokes a token),
    /// `None` when nothing changed.
    pub fn reload_revocations(&mut self) -> Option<Result<String, TokenError>> {
        let revocations = self.revocations.as_mut()?;
        let seen = std::fs::metadata(&revocations.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if seen == revocations.seen || seen.is_none() {
            return None;
        }
        revocations.seen = seen;
        let outcome = RevocationList::load(&revocations.path, &self.trusted).and_then(|(list, _)| {
            if let Some(held) = &revocations.list
                && list.issued_at < held.issued_at
            {
                return Err(TokenError::RevocationFile {
                    path: revocations.path.display().to_string(),
                    reason: format!(
                        "issued at {}, older than the list in force (issued at {}): kept that one",
                        list.issued_at, held.issued_at
                    ),
                });
            }
            Ok(list)
        });
        Some(match outcome {
            Ok(list) => {
                let note = format!(
                    "revocation list {}: {} tokens and {} passengers revoked (issued at {})",
                    revocations.path.display(),
                    list.token_ids.len(),
                    list.passenger_ids.len(),
                    list.issued_at
                );
                revocations.list = Some(list);
                // A token judged before must be judged again against the new list.
                if let Some(shown) = &mut self.shown {
                    shown.judged = None;
                }
                Ok(note)
            }
            Err(e) => Err(e),
        })
    }

    /// A code's text read at running time `at`.
    pub fn present(&mut self, text: &str, at: Duration) {
        match &mut self.shown {
            Some(shown) if shown.text == text => shown.last_read = at,
            _ => {
                self.shown = Some(Sighting {
                    text: text.to_owned(),
                    last_read: at,
                    judged: None,
                })
            }
        }
    }

    /// The token shown within the window at running time `at`, judged for the embedder whose
    /// model sha256 starts with `model_prefix` at Unix time `now`; `None` when none is. A token
    /// past its window is forgotten (and its text and template zeroed). Running time going back
    /// (a restarted stream) forgets it too.
    pub fn shown(&mut self, at: Duration, model_prefix: [u8; 8], now: i64) -> Option<Shown<'_>> {
        let expired = self.shown.as_ref().is_some_and(|shown| {
            at < shown.last_read || at.saturating_sub(shown.last_read) > self.window
        });
        if expired {
            self.shown = None;
        }
        let shown = self.shown.as_mut()?;
        let list = self.revocations.as_ref().and_then(|r| r.list.as_ref());
        let stale = match &shown.judged {
            None => true,
            Some((prefix, _)) if *prefix != model_prefix => true,
            // Expiry moves with the clock: an admitted token is checked again every time.
            Some((_, Ok(admitted))) => now >= admitted.claims().expires_at,
            Some((_, Err(_))) => false,
        };
        if stale {
            let judged = admit(&shown.text, &self.trusted, list, model_prefix, now).map(|token| {
                let template = token.claims.template.embedding();
                Admitted { token, template }
            });
            shown.judged = Some((model_prefix, judged));
        }
        match &shown.judged {
            Some((_, Ok(admitted))) => Some(Shown::Admitted(admitted)),
            Some((_, Err(refused))) => Some(Shown::Refused(refused)),
            None => None,
        }
    }

    /// The token shown when it was admitted at the last [`TokenDesk::shown`].
    pub fn admitted(&self) -> Option<&Admitted> {
        match self.shown.as_ref()?.judged.as_ref()? {
            (_, Ok(admitted)) => Some(admitted),
            (_, Err(_)) => None,
        }
    }
}

/// The first 8 bytes of the sha256 in a model identity `stem@sha256:<16 hex>` (how the
/// elements name a model, and what a token carries to name its embedder).
pub fn model_prefix(identity: &str) -> Option<[u8; 8]> {
    let (_, digits) = identity.rsplit_once("@sha256:")?;
    crate::unhex(digits, false)
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the template: this is what a log line would show.
        f.debug_struct("Admitted")
            .field("token_id", &hex(&self.token.claims.token_id))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::issue;
    use crate::template::quantise;
    use crate::test_support::*;
    use ed25519_dalek::SigningKey;

    const MODEL: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
    const NOW: i64 = 1_800_000_000;

    struct Office {
        key: SigningKey,
        dir: tempfile::TempDir,
    }

    impl Office {
        fn new() -> Office {
            let dir = tempfile::tempdir().unwrap();
            let (_, public, _) = crate::generate_key(dir.path(), "office").unwrap();
            let key = crate::load_signing_key(&dir.path().join("office.key.pem")).unwrap();
            // The trusted directory holds public keys only.
            std::fs::remove_file(dir.path().join("office.key.pem")).unwrap();
            assert!(public.exists());
            Office { key, dir }
        }

        fn token(&self, token_id: u8, passenger: &str, face: &[f32]) -> String {
            let claims = Claims {
                token_id: [token_id; 16],
                passenger_id: passenger.into(),
                issued_at: NOW - 60,
                expires_at: NOW + 3600,
                model_sha256_prefix: MODEL,
                template: quantise(face),
            };
            issue(&claims, &self.key).unwrap()
        }

        fn desk(&self, revocations: Option<PathBuf>) -> TokenDesk {
            TokenDesk::open(self.dir.path(), revocations, Duration::from_secs(10)).unwrap()
        }
    }

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_token_shown_counts_for_its_window_and_compares_1_to_1() {
        let office = Office::new();
        let face = unit(128, 1);
        let mut desk = office.desk(None);
        assert!(desk.shown(at(0), MODEL, NOW).is_none());
        desk.present(&office.token(7, "P-7", &face), at(1));
        match desk.shown(at(5), MODEL, NOW) {
            Some(Shown::Admitted(token)) => {
                assert_eq!(token.claims().passenger_id, "P-7");
                assert!(token.similarity(&face) > 0.999);
                assert!(token.similarity(&unit(128, 2)) < 0.5);
                assert_eq!(token.similarity(&unit(64, 1)), -1.0);
            }
            _ => panic!("a valid token is admitted"),
        }
        assert!(desk.admitted().is_some());
        // Read again at 9 s: counts until 19 s.
        desk.present(&office.token(7, "P-7", &face), at(9));
        assert!(desk.shown(at(19), MODEL, NOW).is_some());
        assert!(desk.shown(at(20), MODEL, NOW).is_none());
        assert!(desk.admitted().is_none());
    }

    #[test]
    fn refusals_name_their_kind_and_another_embedder_is_invalid() {
        let office = Office::new();
        let mut desk = office.desk(None);
        desk.present("FGT1:NOT A TOKEN", at(0));
        assert!(matches!(
            desk.shown(at(0), MODEL, NOW),
            Some(Shown::Refused(Refused {
                kind: crate::RefusalKind::Invalid,
                ..
            }))
        ));
        desk.present(&office.token(1, "P-1", &unit(128, 1)), at(1));
        assert!(matches!(
            desk.shown(at(1), [9; 8], NOW),
            Some(Shown::Refused(Refused {
                kind: crate::RefusalKind::Invalid,
                ..
            }))
        ));
        assert!(matches!(
            desk.shown(at(1), MODEL, NOW + 7200),
            Some(Shown::Refused(Refused {
                kind: crate::RefusalKind::Expired,
                ..
            }))
        ));
    }

    #[test]
    fn a_revocation_list_changed_while_running_revokes_a_token_being_shown() {
        let office = Office::new();
        let list_path = office.dir.path().join("revoked");
        let mut desk = office.desk(Some(list_path.clone()));
        let text = office.token(3, "P-3", &unit(128, 3));
        desk.present(&text, at(0));
        assert!(matches!(
            desk.shown(at(0), MODEL, NOW),
            Some(Shown::Admitted(_))
        ));
        assert!(
            desk.reload_revocations().is_none(),
            "no list yet: nothing to load"
        );

        let list = RevocationList {
            issued_at: NOW,
            token_ids: [[3; 16]].into(),
            passenger_ids: Default::default(),
        };
        std::fs::write(&list_path, list.sign(&office.key).unwrap()).unwrap();
        let note = desk.reload_revocations().unwrap().unwrap();
        assert!(note.contains("1 tokens"), "{note}");
        assert!(matches!(
            desk.shown(at(1), MODEL, NOW),
            Some(Shown::Refused(Refused {
                kind: crate::RefusalKind::Revoked,
                ..
            }))
        ));

        // A broken list is refused and the last good one stays in force.
        std::fs::write(&list_path, "FGR1\ngarbage\n").unwrap();
        assert!(desk.reload_revocations().unwrap().is_err());
        assert!(matches!(
            desk.shown(at(2), MODEL, NOW),
            Some(Shown::Refused(Refused {
                kind: crate::RefusalKind::Revoked,
                ..
            }))
        ));
        // So does a deleted one.
        std::fs::remove_file(&list_path).unwrap();
        assert!(desk.reload_revocations().is_none());
        assert!(matches!(
            desk.shown(at(3), MODEL, NOW),
            Some(Shown::Refused(Refused {
                kind: crate::RefusalKind::Revoked,
                ..
            }))
        ));
    }

    #[test]
    fn a_list_that_exists_at_start_must_verify() {
        let office = Office::new();
        let list_path = office.dir.path().join("revoked");
        std::fs::write(&list_path, "not a list").unwrap();
        let error = TokenDesk::open(office.dir.path(), Some(list_path), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(error.to_string().contains("revoked"), "{error}");
    }

    #[test]
    fn model_prefixes_come_from_identities() {
        assert_eq!(
            model_prefix("facegate_sface_2021dec@sha256:9d8ee59db2af50ad"),
            Some([0x9d, 0x8e, 0xe5, 0x9d, 0xb2, 0xaf, 0x50, 0xad])
        );
        for bad in ["sface", "x@sha256:9d8e", "x@sha256:zz8ee59db2af50ad"] {
            assert_eq!(model_prefix(bad), None, "{bad}");
        }
    }
}
