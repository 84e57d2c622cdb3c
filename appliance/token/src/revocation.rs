// SPDX-License-Identifier: MIT OR Apache-2.0
//! The revocation list: the tokens and passengers the enrolment office has withdrawn before
//! their tokens expire (a lost phone, a passenger who asked to leave). The office signs it with
//! the tokens' keys and publishes it; every gate reloads it when it changes.
//!
//! It is text, so an operator can read and diff it:
//!
//! ```text
//! FGR1
//! issued-at <unix seconds>
//! token <32 lowercase hex digits>
//! passenger <1..=64 bytes, to the end of the line>
//! signature <key id: 16 hex digits> <Ed25519 signature: 128 hex digits>
//! ```
//!
//! `token` and `passenger` lines come in any number and order. The signature covers every byte
//! before the `signature` line, so what is verified is exactly what is read, with nothing
//! normalised in between; the signature line is the last (one newline may follow it). Every
//! signed list starts with `FGR1\n` and every token payload with `FGT`, so the signature of one
//! is never taken for the other's although the same keys sign both.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey};

use crate::keys::{KeyId, TrustedKeys};
use crate::payload::{Claims, MAX_PASSENGER_ID};
use crate::{TokenError, hex, shown, unhex};

/// The first line of a revocation list (its format's version).
pub const REVOCATION_HEADER: &str = "FGR1";

const ISSUED_AT: &str = "issued-at";
const TOKEN: &str = "token";
const PASSENGER: &str = "passenger";
const SIGNATURE: &str = "signature";

/// The tokens and passengers the office has revoked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevocationList {
    /// Seconds since the Unix epoch: of two lists, a gate keeps the later one.
    pub issued_at: i64,
    pub token_ids: BTreeSet<[u8; 16]>,
    /// Opaque, as in a token: revoking one revokes every token issued to it.
    pub passenger_ids: BTreeSet<String>,
}

/// What keeps `id` off a `passenger` line, as a predicate ("is 0 bytes, ..."), if anything.
fn passenger_id_problem(id: &str) -> Option<String> {
    let len = id.len();
    if len == 0 || len > MAX_PASSENGER_ID {
        return Some(format!("is {len} bytes, not 1..={MAX_PASSENGER_ID}"));
    }
    if id.contains(['\n', '\r']) {
        return Some("contains a line end".into());
    }
    // An editor or a copy and paste adds or drops such whitespace unseen, and the id would no
    // longer be the token's.
    if id.trim() != id {
        return Some("starts or ends with whitespace".into());
    }
    None
}

impl RevocationList {
    /// The file's text, signed with `key`.
    pub fn sign(&self, key: &SigningKey) -> Result<String, TokenError> {
        if let Some((id, problem)) = self
            .passenger_ids
            .iter()
            .find_map(|id| passenger_id_problem(id).map(|p| (id, p)))
        {
            return Err(TokenError::Claim(format!(
                "the revocation list's passenger id {} {problem}",
                shown(id)
            )));
        }
        let mut text = format!("{REVOCATION_HEADER}\n{ISSUED_AT} {}\n", self.issued_at);
        // Writing to a String cannot fail.
        for id in &self.token_ids {
            let _ = writeln!(text, "{TOKEN} {}", hex(id));
        }
        for id in &self.passenger_ids {
            let _ = writeln!(text, "{PASSENGER} {id}");
        }
        let signature = key.sign(text.as_bytes());
        let key_id = KeyId::of(&key.verifying_key());
        let _ = writeln!(text, "{SIGNATURE} {key_id} {}", hex(&signature.to_bytes()));
        Ok(text)
    }

    /// Parses `text` and verifies its signature by a key in `trusted`; every refusal is one
    /// line naming the line number and what is wrong with it. The format is checked before the
    /// signature, so a damaged file says where it is damaged.
    pub fn parse(text: &str, trusted: &TrustedKeys) -> Result<(RevocationList, KeyId), TokenError> {
        let mut list = RevocationList::default();
        // The key id, the signature, and the length of the text it signs.
        let mut signature: Option<(KeyId, Signature, usize)> = None;
        let mut number = 0;
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            number += 1;
            let start = at;
            at += line.len();
            let refuse = |what: String| TokenError::Revocations(format!("line {number}: {what}"));
            if signature.is_some() {
                return Err(refuse(
                    "a line after the signature line, which must be the last".into(),
                ));
            }
            let body = line.strip_suffix('\n').unwrap_or(line);
            if body.contains('\r') {
                return Err(refuse(
                    "a carriage return (lines end with \\n alone)".into(),
                ));
            }
            let (keyword, value) = body.split_once(' ').unwrap_or((body, ""));
            match number {
                1 if body == REVOCATION_HEADER => {}
                1 => {
                    return Err(refuse(format!(
                        "expected the header {REVOCATION_HEADER}, got {}",
                        shown(body)
                    )));
                }
                2 if keyword == ISSUED_AT => {
                    list.issued_at = value.parse().map_err(|_| {
                        refuse(format!(
                            "{ISSUED_AT} {} is not a whole number of seconds",
                            shown(value)
                        ))
                    })?;
                }
                2 => {
                    return Err(refuse(format!(
                        "expected \"{ISSUED_AT} <unix seconds>\", got {}",
                        shown(body)
                    )));
                }
                _ => match keyword {
                    TOKEN => {
                        let id = unhex::<16>(value, true).ok_or_else(|| {
                            refuse(format!(
                                "a token id is 32 lowercase hex digits, not {}",
                                shown(value)
                            ))
                        })?;
                        if !list.token_ids.insert(id) {
                            return Err(refuse(format!("token {} is listed twice", hex(&id))));
                        }
                    }
                    // The id is not shown: like a token's, it is journalled, never displayed.
                    PASSENGER => {
                        if let Some(problem) = passenger_id_problem(value) {
                            return Err(refuse(format!("the passenger id {problem}")));
                        }
                        if !list.passenger_ids.insert(value.to_string()) {
                            return Err(refuse("a passenger id listed twice".into()));
                        }
                    }
                    SIGNATURE => {
                        let (key_id, bytes) = parse_signature(value).map_err(refuse)?;
                        signature = Some((key_id, bytes, start));
                    }
                    _ if body == REVOCATION_HEADER => {
                        return Err(refuse(format!(
                            "a second {REVOCATION_HEADER} header (it is line 1 only)"
                        )));
                    }
                    ISSUED_AT => {
                        return Err(refuse(format!(
                            "a second {ISSUED_AT} line (it is line 2 only)"
                        )));
                    }
                    "" if body.is_empty() => return Err(refuse("an empty line".into())),
                    _ => return Err(refuse(format!("unknown keyword {}", shown(keyword)))),
                },
            }
        }
        let Some((key_id, bytes, signed_len)) = signature else {
            return Err(TokenError::Revocations(if number == 0 {
                format!("line 1: the file is empty, expected the header {REVOCATION_HEADER}")
            } else {
                format!(
                    "line {}: the list ends without its signature line",
                    number + 1
                )
            }));
        };
        let key = trusted
            .get(&key_id)
            .ok_or(TokenError::UntrustedKey(key_id))?;
        // `signed_len` is where a line of `text` starts, so it is within `text`.
        key.verify_strict(&text.as_bytes()[..signed_len], &bytes)
            .map_err(|_| TokenError::BadSignature(key_id))?;
        Ok((list, key_id))
    }

    /// Reads `path` and parses it; every refusal is "PATH: reason".
    pub fn load(path: &Path, trusted: &TrustedKeys) -> Result<(RevocationList, KeyId), TokenError> {
        let file_error = |reason: String| TokenError::RevocationFile {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = 1 + bytes
                .iter()
                .take(e.valid_up_to())
                .filter(|&&b| b == b'\n')
                .count();
            file_error(TokenError::Revocations(format!("line {line}: not UTF-8")).to_string())
        })?;
        RevocationList::parse(text, trusted).map_err(|e| file_error(e.to_string()))
    }

    /// Whether `claims` is revoked: its token id, or its passenger id, is on the list.
    pub fn revokes(&self, claims: &Claims) -> bool {
        self.token_ids.contains(&claims.token_id)
            || self.passenger_ids.contains(&claims.passenger_id)
    }
}

/// The key id and signature of a `signature` line. Lowercase only: the signature does not
/// cover its own line, so a second spelling of it would be a changed byte that still verifies.
fn parse_signature(value: &str) -> Result<(KeyId, Signature), String> {
    let (key_id, signature) = value.split_once(' ').unwrap_or((value, ""));
    let key_id = unhex::<8>(key_id, true).ok_or_else(|| {
        format!(
            "the key id is 16 lowercase hex digits, not {}",
            shown(key_id)
        )
    })?;
    let signature = unhex::<64>(signature, true).ok_or_else(|| {
        format!(
            "the signature is 128 lowercase hex digits, not {}",
            shown(signature)
        )
    })?;
    Ok((KeyId(key_id), Signature::from_bytes(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::quantise;
    use crate::test_support::*;

    fn list() -> RevocationList {
        RevocationList {
            issued_at: 1_764_633_600,
            token_ids: [[0xab; 16], [0x01; 16]].into(),
            passenger_ids: ["p-000123".to_string(), "p 7 ü".to_string()].into(),
        }
    }

    /// `body` (every line before the signature) with a valid signature line by `key` after it,
    /// so what a test refuses is the format, not the signature.
    fn signed(body: &str, key: &SigningKey) -> String {
        let signature = key.sign(body.as_bytes());
        format!(
            "{body}signature {} {}\n",
            KeyId::of(&key.verifying_key()),
            hex(&signature.to_bytes())
        )
    }

    fn claims(token_id: [u8; 16], passenger_id: &str) -> Claims {
        Claims {
            token_id,
            passenger_id: passenger_id.into(),
            issued_at: 1_764_633_600,
            expires_at: 1_764_633_600 + 86_400,
            model_sha256_prefix: [0; 8],
            template: quantise(&[0.6, 0.8]),
        }
    }

    #[test]
    fn a_signed_list_parses_back_with_its_entries_and_key() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = list().sign(&office).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert_eq!(lines.first(), Some(&"FGR1"));
        assert_eq!(lines.get(1), Some(&"issued-at 1764633600"));
        assert_eq!(
            lines.get(2),
            Some(&"token 01010101010101010101010101010101")
        );
        assert!(text.ends_with('\n'));
        let (parsed, key_id) = RevocationList::parse(&text, &trusted).unwrap();
        assert_eq!(parsed, list());
        assert_eq!(key_id, KeyId::of(&office.verifying_key()));
        // Without the newline after the signature, and with the entries in another order.
        assert_eq!(
            RevocationList::parse(text.trim_end_matches('\n'), &trusted)
                .unwrap()
                .0,
            list()
        );
        let shuffled = signed(
            concat!(
                "FGR1\nissued-at 1764633600\n",
                "passenger p-000123\n",
                "token abababababababababababababababab\n",
                "passenger p 7 ü\n",
                "token 01010101010101010101010101010101\n",
            ),
            &office,
        );
        assert_eq!(
            RevocationList::parse(&shuffled, &trusted).unwrap().0,
            list()
        );
        // An empty list, and one issued before the epoch.
        let empty = RevocationList {
            issued_at: -5,
            ..RevocationList::default()
        };
        let text = empty.sign(&office).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(RevocationList::parse(&text, &trusted).unwrap().0, empty);
    }

    #[test]
    fn a_list_signed_by_an_untrusted_key_is_refused_and_a_rotation_trusts_both() {
        let (office, other) = (key(1), key(2));
        let text = list().sign(&other).unwrap();
        let e = RevocationList::parse(&text, &trusting(&[&office])).unwrap_err();
        assert_eq!(
            e,
            TokenError::UntrustedKey(KeyId::of(&other.verifying_key()))
        );
        assert!(e.to_string().contains("untrusted key"), "{e}");
        let both = trusting(&[&office, &other]);
        RevocationList::parse(&text, &both).unwrap();
        RevocationList::parse(&list().sign(&office).unwrap(), &both).unwrap();
    }

    #[test]
    fn every_single_byte_change_is_refused_without_a_panic() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = list().sign(&office).unwrap();
        let bytes = text.as_bytes();
        let mut tried = 0;
        for at in 0..bytes.len() {
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for replacement in [
                bytes[at] ^ 0x01,
                bytes[at] ^ 0x20,
                b'a',
                b'0',
                b' ',
                b'\n',
                b'\r',
            ] {
                let mut changed = bytes.to_vec();
                changed[at] = replacement;
                variants.push(changed);
            }
            let mut removed = bytes.to_vec();
            removed.remove(at);
            // Dropping the newline after the signature line leaves a valid list.
            if at + 1 < bytes.len() {
                variants.push(removed);
            }
            let mut inserted = bytes.to_vec();
            inserted.insert(at, b'0');
            variants.push(inserted);
            for changed in variants.into_iter().filter(|v| v != bytes) {
                // A change that breaks the UTF-8 is load's to refuse (tested there).
                let Ok(changed) = std::str::from_utf8(&changed) else {
                    continue;
                };
                tried += 1;
                let e = RevocationList::parse(changed, &trusted)
                    .expect_err(&format!("byte {at} changed: {changed:?}"));
                assert!(
                    matches!(
                        e,
                        TokenError::Revocations(_)
                            | TokenError::BadSignature(_)
                            | TokenError::UntrustedKey(_)
                    ),
                    "{at}: {e}"
                );
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
        assert!(tried > 8 * bytes.len(), "{tried}");
    }

    #[test]
    fn every_truncation_is_refused_without_a_panic() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let text = list().sign(&office).unwrap();
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() - 1 {
            let Ok(head) = std::str::from_utf8(&bytes[..cut]) else {
                continue;
            };
            let e = RevocationList::parse(head, &trusted).unwrap_err();
            assert!(matches!(e, TokenError::Revocations(_)), "cut at {cut}: {e}");
            assert!(e.to_string().contains("line "), "{e}");
        }
        assert!(RevocationList::parse(&text[..text.len() - 1], &trusted).is_ok());
        // Random bytes after a valid start: never a panic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let mut garbage = b"FGR1\nissued-at 1\n".to_vec();
            // Mostly the format's own characters, so that lines get far enough to be read.
            let alphabet = b"token passenger signature 0123456789abcdef\n\r\x01\xff";
            garbage.extend((0..len).map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            }));
            if let Ok(garbage) = std::str::from_utf8(&garbage) {
                assert!(RevocationList::parse(garbage, &trusted).is_err());
            }
        }
    }

    #[test]
    fn lines_out_of_place_are_refused_naming_the_line() {
        let office = key(1);
        let trusted = trusting(&[&office]);
        let head = "FGR1\nissued-at 1764633600\n";
        let token = "token abababababababababababababababab\n";
        let good = signed(&format!("{head}{token}"), &office);
        for (text, says) in [
            (String::new(), "line 1: the file is empty"),
            (
                signed("FGR2\nissued-at 1\n", &office),
                "line 1: expected the header FGR1, got \"FGR2\"",
            ),
            (
                signed(" FGR1\nissued-at 1\n", &office),
                "line 1: expected the header",
            ),
            (
                signed("FGR1\ntoken 00\n", &office),
                "line 2: expected \"issued-at <unix seconds>\"",
            ),
            (
                signed("FGR1\nissued-at soon\n", &office),
                "line 2: issued-at \"soon\" is not a whole number",
            ),
            (
                signed("FGR1\nissued-at 99999999999999999999\n", &office),
                "line 2: issued-at",
            ),
            (
                signed(&format!("{head}FGR1\n"), &office),
                "line 3: a second FGR1 header",
            ),
            (
                signed(&format!("{head}{token}issued-at 5\n"), &office),
                "line 4: a second issued-at line",
            ),
            (
                signed(&format!("{head}expires 5\n"), &office),
                "line 3: unknown keyword \"expires\"",
            ),
            (
                signed(&format!("{head}\n"), &office),
                "line 3: an empty line",
            ),
            (
                signed(&format!("{head}token abab\n"), &office),
                "line 3: a token id is 32 lowercase hex digits, not \"abab\"",
            ),
            (
                signed(
                    &format!("{head}token ABABABABABABABABABABABABABABABAB\n"),
                    &office,
                ),
                "line 3: a token id is 32 lowercase",
            ),
            (
                signed(
                    &format!("{head}token abababababababababababababababag\n"),
                    &office,
                ),
                "line 3: a token id",
            ),
            (
                signed(
                    &format!("{head}token  abababababababababababababababab\n"),
                    &office,
                ),
                "line 3: a token id",
            ),
            (
                signed(&format!("{head}{token}{token}"), &office),
                "line 4: token abababababababababababababababab is listed twice",
            ),
            (
                signed(&format!("{head}passenger p-1\npassenger p-1\n"), &office),
                "line 4: a passenger id listed twice",
            ),
            (
                signed(&format!("{head}passenger\n"), &office),
                "line 3: the passenger id is 0 bytes",
            ),
            (
                signed(&format!("{head}passenger  p-1\n"), &office),
                "line 3: the passenger id starts or ends with whitespace",
            ),
            (
                signed(&format!("{head}passenger {}\n", "x".repeat(65)), &office),
                "line 3: the passenger id is 65 bytes, not 1..=64",
            ),
            (
                signed(&format!("{head}passenger p-1\r\n"), &office),
                "line 3: a carriage return",
            ),
            (
                format!("{good}{token}"),
                "line 5: a line after the signature line",
            ),
            (
                format!("{good}\n"),
                "line 5: a line after the signature line",
            ),
            (
                good.replacen(token, "", 1) + token,
                "line 4: a line after the signature line",
            ),
            (
                format!("{head}{token}"),
                "line 4: the list ends without its signature line",
            ),
            (
                format!("{head}signature 00\n"),
                "line 3: the key id is 16 lowercase hex digits, not \"00\"",
            ),
            (
                good.replace("signature ", "signature  "),
                "line 4: the key id",
            ),
            (
                good.trim_end().to_string() + "0\n",
                "line 4: the signature is 128 lowercase hex digits",
            ),
            (
                good.trim_end().to_string() + " \n",
                "line 4: the signature is 128",
            ),
        ] {
            let e = RevocationList::parse(&text, &trusted)
                .expect_err(says)
                .to_string();
            assert!(e.starts_with("revocation list: "), "{e}");
            assert!(e.contains(says), "{says:?} not in {e:?}");
            assert!(!e.contains('\n'), "{e}");
        }
        // Uppercase hex in the signature line, which the signature does not cover.
        let upper = {
            let (body, line) = good.trim_end().rsplit_once('\n').unwrap();
            format!(
                "{body}\n{}\n",
                line.to_uppercase().replace("SIGNATURE", "signature")
            )
        };
        let e = RevocationList::parse(&upper, &trusted)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4: the key id is 16 lowercase hex digits"),
            "{e}"
        );
        // A huge line is shown cut short.
        let huge = signed(&format!("{head}{}\n", "x".repeat(100_000)), &office);
        let e = RevocationList::parse(&huge, &trusted)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 120, "{e}");
    }

    #[test]
    fn signing_refuses_passenger_ids_a_line_cannot_carry() {
        let office = key(1);
        for (id, says) in [
            ("", "is 0 bytes"),
            (&"x".repeat(65) as &str, "is 65 bytes"),
            ("p\n2", "contains a line end"),
            ("p\r2", "contains a line end"),
            (" p", "starts or ends with whitespace"),
            ("p\t", "starts or ends with whitespace"),
        ] {
            let mut revoked = list();
            revoked.passenger_ids.insert(id.to_string());
            let e = revoked.sign(&office).unwrap_err();
            assert!(matches!(e, TokenError::Claim(_)), "{e}");
            let e = e.to_string();
            assert!(e.contains(says) && !e.contains('\n'), "{id:?}: {e}");
        }
        let mut longest = list();
        longest.passenger_ids.insert("é".repeat(32));
        let text = longest.sign(&office).unwrap();
        assert_eq!(
            RevocationList::parse(&text, &trusting(&[&office]))
                .unwrap()
                .0,
            longest
        );
    }

    #[test]
    fn a_list_revokes_by_token_id_and_by_passenger_id() {
        let revoked = list();
        assert!(revoked.revokes(&claims([0xab; 16], "p-999")));
        assert!(revoked.revokes(&claims([0x55; 16], "p-000123")));
        assert!(revoked.revokes(&claims([0x55; 16], "p 7 ü")));
        assert!(!revoked.revokes(&claims([0x55; 16], "p-999")));
        assert!(!revoked.revokes(&claims([0x55; 16], "p-000123 ")));
        assert!(!RevocationList::default().revokes(&claims([0; 16], "p-000123")));
    }

    #[test]
    fn load_reads_a_file_and_prefixes_every_refusal_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let office = key(1);
        let trusted = trusting(&[&office]);
        let path = dir.path().join("revoked.txt");
        std::fs::write(&path, list().sign(&office).unwrap()).unwrap();
        let (loaded, key_id) = RevocationList::load(&path, &trusted).unwrap();
        assert_eq!(loaded, list());
        assert_eq!(key_id, KeyId::of(&office.verifying_key()));

        let shown = path.display().to_string();
        let refused = |path: &Path| {
            let e = RevocationList::load(path, &trusted).unwrap_err();
            assert!(matches!(e, TokenError::RevocationFile { .. }), "{e}");
            let e = e.to_string();
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let e = refused(&dir.path().join("missing.txt"));
        assert!(
            e.starts_with(&format!("{}: ", dir.path().join("missing.txt").display())),
            "{e}"
        );

        std::fs::write(&path, list().sign(&key(2)).unwrap()).unwrap();
        let e = refused(&path);
        assert!(
            e.starts_with(&format!("{shown}: signed by untrusted key")),
            "{e}"
        );

        let mut forged = list().sign(&office).unwrap();
        forged = forged.replace("p-000123", "p-000124");
        std::fs::write(&path, forged).unwrap();
        let e = refused(&path);
        assert!(
            e.starts_with(&format!("{shown}: the signature does not verify")),
            "{e}"
        );

        std::fs::write(&path, b"FGR1\nissued-at 1\npassenger p-\xff\n").unwrap();
        assert_eq!(
            refused(&path),
            format!("{shown}: revocation list: line 3: not UTF-8")
        );

        std::fs::write(&path, b"FGR1\nissued-at 1\nrevoke everyone\n").unwrap();
        assert_eq!(
            refused(&path),
            format!("{shown}: revocation list: line 3: unknown keyword \"revoke\"")
        );
    }
}
