// SPDX-License-Identifier: MIT OR Apache-2.0
//! What a gate does with the text its QR reader returned, short of comparing faces: the
//! signature, the embedder the template was made with, the validity window, the revocation
//! list. One function, so that every gate checks the same things in the same order, and each
//! refusal is one of the gate's deny reasons.

use crate::hex;
use crate::keys::TrustedKeys;
use crate::payload::{SignedToken, parse_text};
use crate::revocation::RevocationList;

/// How far a token's issue time may be ahead of the gate's clock: a token shown minutes after
/// it was issued must pass on a gate whose clock is a little behind the office's, but not one
/// issued for tomorrow.
pub const CLOCK_SKEW_S: i64 = 300;

/// Why the gate refuses a token; maps one-to-one to the gate's deny reasons token-invalid,
/// token-expired, token-revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    Invalid,
    Expired,
    Revoked,
}

impl RefusalKind {
    /// The gate's deny reason for it.
    pub fn deny_reason(self) -> &'static str {
        match self {
            RefusalKind::Invalid => "token-invalid",
            RefusalKind::Expired => "token-expired",
            RefusalKind::Revoked => "token-revoked",
        }
    }
}

/// A refused token: why, and whose, once that is known.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    pub kind: RefusalKind,
    /// Known once the signature verified: an unverified token's ids are anyone's to write.
    pub token_id: Option<[u8; 16]>,
    pub passenger_id: Option<String>,
    /// One line.
    pub reason: String,
}

/// Verifies `text` against `trusted`, then checks that it was issued for the gate's embedder
/// (`model_sha256_prefix`: a template only compares with embeddings of the model that made
/// it), that `now` (Unix seconds) is within [issued at − [`CLOCK_SKEW_S`], expires at), and
/// that `revocations` does not revoke it. With no list (none loaded yet) nothing is revoked.
pub fn admit(
    text: &str,
    trusted: &TrustedKeys,
    revocations: Option<&RevocationList>,
    model_sha256_prefix: [u8; 8],
    now: i64,
) -> Result<SignedToken, Refused> {
    let token = parse_text(text, trusted).map_err(|e| Refused {
        kind: RefusalKind::Invalid,
        token_id: None,
        passenger_id: None,
        reason: e.to_string(),
    })?;
    let claims = &token.claims;
    let refuse = |kind, reason| Refused {
        kind,
        token_id: Some(claims.token_id),
        passenger_id: Some(claims.passenger_id.clone()),
        reason,
    };
    if claims.model_sha256_prefix != model_sha256_prefix {
        return Err(refuse(
            RefusalKind::Invalid,
            format!(
                "issued for embedder {}, this gate runs {}",
                hex(&claims.model_sha256_prefix),
                hex(&model_sha256_prefix)
            ),
        ));
    }
    // Saturating: the times are signed, but by an office that may have written any i64.
    if now < claims.issued_at.saturating_sub(CLOCK_SKEW_S) {
        return Err(refuse(
            RefusalKind::Invalid,
            format!(
                "issued at {}, {} s ahead of this gate's clock (more than the {CLOCK_SKEW_S} s \
                 allowed for clock skew)",
                claims.issued_at,
                claims.issued_at.saturating_sub(now)
            ),
        ));
    }
    if now >= claims.expires_at {
        return Err(refuse(
            RefusalKind::Expired,
            format!(
                "expired at {}, {} s ago",
                claims.expires_at,
                now.saturating_sub(claims.expires_at)
            ),
        ));
    }
    if let Some(list) = revocations.filter(|list| list.revokes(claims)) {
        // The ids themselves are in the refusal's fields, journalled, and not in its reason.
        let whose = if list.token_ids.contains(&claims.token_id) {
            "the token"
        } else {
            "its passenger"
        };
        return Err(refuse(
            RefusalKind::Revoked,
            format!(
                "{whose} is on the revocation list issued at {}",
                list.issued_at
            ),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use crate::test_support::*;

    use super::*;
    use crate::payload::{Claims, issue};

    /// Refused with the token's ids, one line; the reason.
    fn refused_with_ids(refused: Refused, kind: RefusalKind) -> String {
        assert_eq!(refused.kind, kind, "{refused:?}");
        assert_eq!(refused.token_id, Some([7; 16]));
        assert_eq!(refused.passenger_id.as_deref(), Some("p-000123"));
        assert!(!refused.reason.contains('\n'), "{}", refused.reason);
        assert_eq!(refused.to_string(), refused.reason);
        refused.reason
    }

    #[test]
    fn a_valid_token_is_admitted_from_the_skew_allowance_until_its_expiry() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = issue(&claims(), &office).unwrap();
        let others = RevocationList {
            issued_at: ISSUED,
            token_ids: [[8; 16]].into(),
            passenger_ids: ["p-000124".to_string()].into(),
        };
        for now in [ISSUED - CLOCK_SKEW_S, ISSUED, ISSUED + 86_400, EXPIRES - 1] {
            for revocations in [None, Some(&others)] {
                let token = admit(&text, &trusted, revocations, MODEL, now).unwrap();
                assert_eq!(token.claims, claims());
                assert_eq!(token.key_id, crate::KeyId::of(&office.verifying_key()));
            }
        }
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = issue(&claims(), &office).unwrap();
        let e = admit(&text, &trusted, None, MODEL, EXPIRES).unwrap_err();
        let reason = refused_with_ids(e, RefusalKind::Expired);
        assert_eq!(reason, format!("expired at {EXPIRES}, 0 s ago"));
        let e = admit(&text, &trusted, None, MODEL, i64::MAX).unwrap_err();
        refused_with_ids(e, RefusalKind::Expired);
    }

    #[test]
    fn a_token_issued_beyond_the_skew_allowance_is_not_yet_valid_and_invalid() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = issue(&claims(), &office).unwrap();
        let e = admit(&text, &trusted, None, MODEL, ISSUED - CLOCK_SKEW_S - 1).unwrap_err();
        let reason = refused_with_ids(e, RefusalKind::Invalid);
        assert!(
            reason.contains("301 s ahead of this gate's clock"),
            "{reason}"
        );
        let e = admit(&text, &trusted, None, MODEL, i64::MIN).unwrap_err();
        refused_with_ids(e, RefusalKind::Invalid);
    }

    #[test]
    fn a_token_for_another_embedder_is_invalid_naming_both() {
        let office = key(1);
        let text = issue(&claims(), &office).unwrap();
        let e = admit(&text, &trusting(&[&office]), None, [0xff; 8], ISSUED).unwrap_err();
        assert_eq!(
            refused_with_ids(e, RefusalKind::Invalid),
            "issued for embedder 9d8ee59db2af50ad, this gate runs ffffffffffffffff"
        );
    }

    #[test]
    fn a_token_revoked_by_its_id_or_its_passenger_is_refused_as_revoked() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = issue(&claims(), &office).unwrap();
        // Through the signed text, as a gate has it.
        let by_token = RevocationList {
            issued_at: ISSUED + 60,
            token_ids: [[7; 16]].into(),
            ..RevocationList::default()
        };
        let by_token = RevocationList::parse(&by_token.sign(&office).unwrap(), &trusted)
            .unwrap()
            .0;
        let e = admit(&text, &trusted, Some(&by_token), MODEL, ISSUED).unwrap_err();
        let reason = refused_with_ids(e, RefusalKind::Revoked);
        assert_eq!(
            reason,
            format!(
                "the token is on the revocation list issued at {}",
                ISSUED + 60
            )
        );
        let by_passenger = RevocationList {
            issued_at: ISSUED + 60,
            passenger_ids: ["p-000123".to_string()].into(),
            ..RevocationList::default()
        };
        let e = admit(&text, &trusted, Some(&by_passenger), MODEL, ISSUED).unwrap_err();
        let reason = refused_with_ids(e, RefusalKind::Revoked);
        assert!(
            reason.starts_with("its passenger is on the revocation list"),
            "{reason}"
        );
        assert!(
            !reason.contains("p-000123"),
            "the passenger id is not in the reason"
        );
    }

    #[test]
    fn garbage_and_a_changed_token_are_invalid_with_no_ids() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = issue(&claims(), &office).unwrap();
        let changed = text.replacen("FGT1:", "FGT1:0", 1);
        let long = "x".repeat(10_000);
        for garbage in ["", "hello", "FGT1:", "FGT1:%%%%", "FGR1\n", &long, &changed] {
            let e = admit(garbage, &trusted, None, MODEL, ISSUED).unwrap_err();
            assert_eq!(e.kind, RefusalKind::Invalid, "{garbage:?}");
            assert_eq!((e.token_id, e.passenger_id.as_ref()), (None, None));
            assert_eq!(
                e.reason,
                parse_text(garbage, &trusted).unwrap_err().to_string()
            );
            assert!(!e.reason.contains('\n'), "{}", e.reason);
        }
    }

    #[test]
    fn with_two_keys_trusted_both_admit_and_a_removed_key_is_invalid() {
        let (old, new) = (key(1), key(2));
        let by_old = issue(&claims(), &old).unwrap();
        let by_new = issue(&claims(), &new).unwrap();
        let both = trusting(&[&old, &new]);
        for text in [&by_old, &by_new] {
            admit(text, &both, None, MODEL, ISSUED).unwrap();
        }
        let only_new = trusting(&[&new]);
        admit(&by_new, &only_new, None, MODEL, ISSUED).unwrap();
        let e = admit(&by_old, &only_new, None, MODEL, ISSUED).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Invalid);
        assert_eq!((e.token_id, e.passenger_id.as_ref()), (None, None));
        assert_eq!(
            e.reason,
            format!(
                "signed by untrusted key {}",
                crate::KeyId::of(&old.verifying_key())
            )
        );
    }

    #[test]
    fn extreme_times_never_overflow() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        for (issued_at, expires_at) in [
            (i64::MIN, i64::MAX),
            (i64::MAX - 1, i64::MAX),
            (i64::MIN, i64::MIN + 1),
        ] {
            let text = issue(
                &Claims {
                    issued_at,
                    expires_at,
                    ..claims()
                },
                &office,
            )
            .unwrap();
            for now in [i64::MIN, -1, 0, ISSUED, i64::MAX] {
                if let Err(e) = admit(&text, &trusted, None, MODEL, now) {
                    assert_ne!(e.kind, RefusalKind::Revoked);
                    assert!(!e.reason.contains('\n'));
                }
            }
        }
    }

    #[test]
    fn each_kind_is_one_deny_reason() {
        assert_eq!(RefusalKind::Invalid.deny_reason(), "token-invalid");
        assert_eq!(RefusalKind::Expired.deny_reason(), "token-expired");
        assert_eq!(RefusalKind::Revoked.deny_reason(), "token-revoked");
    }
}
