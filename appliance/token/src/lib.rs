// SPDX-License-Identifier: MIT OR Apache-2.0
//! FaceGate passenger tokens: the passenger carries their own face template, signed by the
//! enrolment office, and shows it to the gate as a QR code. The gate verifies the signature,
//! the validity window and the revocation list, and compares the live face with the template
//! 1:1, so no gallery of passengers is kept on the gate.
//!
//! A token is a versioned binary payload ([`Claims`] plus an Ed25519 signature over it), carried
//! as text: [`TEXT_PREFIX`] and the payload in RFC 9285 Base45, the QR alphanumeric alphabet (what
//! a QR reader returns, and what `facegatectl token show` takes).
//!
//! Payload version 1, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 3 | magic `FGT` |
//! | 1 | version (1) |
//! | 8 | key id: the first 8 bytes of the SHA-256 of the signer's public key |
//! | 16 | token id |
//! | 8 + 8 | issued at, expires at: seconds since the Unix epoch (i64) |
//! | 8 | the embedder: the first 8 bytes of its model file's SHA-256 (its identity's hash) |
//! | 1 + n | passenger id: length (1..=64), UTF-8 (opaque to the gate) |
//! | 2 + 4 + dim | template: dim (u16), scale (f32), dim int8 values (value = q × scale) |
//! | 64 | Ed25519 signature of everything before it |
//!
//! The office also signs a [`RevocationList`] (text, see its module) with the same keys, and
//! [`admit`] is what a gate does with a token's text short of comparing faces: signature,
//! embedder, validity window, revocation.

mod admission;
mod keys;
mod payload;
mod presence;
mod revocation;
mod template;
#[cfg(test)]
mod test_support;

pub use admission::{CLOCK_SKEW_S, RefusalKind, Refused, admit};
pub use keys::{KeyId, TrustedKeys, generate_key, load_signing_key, load_verifying_key};
pub use payload::{Claims, SignedToken, TEXT_PREFIX, VERSION, issue, parse_text};
pub use presence::{Admitted, DEFAULT_TOKEN_WINDOW_MS, Shown, TokenDesk, model_prefix};
pub use revocation::{REVOCATION_HEADER, RevocationList};
pub use template::{Quantised, quantise};

/// Everything a token or a key can be refused for; one line each.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// The text is not a FaceGate token at all (no prefix, not Base45).
    #[error("not a FaceGate token: {0}")]
    NotAToken(String),
    /// The payload is cut short, too long or has a field out of its range.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A payload version this build does not read.
    #[error("token version {0} is not supported (this gate reads version {VERSION})")]
    Version(u8),
    /// Signed by a key the gate does not trust (a token or a revocation list: the messages of
    /// these two variants name neither, the caller knows which it read).
    #[error("signed by untrusted key {0}")]
    UntrustedKey(KeyId),
    /// The signature does not match what it signs (a changed byte, a forged token or list).
    #[error("the signature does not verify (key {0})")]
    BadSignature(KeyId),
    /// A key file that cannot be read or is not an Ed25519 key.
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
    /// A claim that cannot be issued (an empty or too long passenger id, a bad template), in a
    /// token or a revocation list.
    #[error("cannot issue: {0}")]
    Claim(String),
    /// A revocation list that is not in its format (the message names the line).
    #[error("revocation list: {0}")]
    Revocations(String),
    /// A revocation list file that cannot be read or is refused: the path, then why.
    #[error("{path}: {reason}")]
    RevocationFile { path: String, reason: String },
    /// Text given as a token id that is not 32 hex digits.
    #[error("not a token id (32 hex digits): {0}")]
    TokenId(String),
}

/// Lowercase hex, two digits a byte: how token ids, key ids and embedder prefixes are shown
/// and written.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A token id as an operator types it (to revoke it, to find it in the journal): exactly 32
/// hex digits, either case.
pub fn parse_token_id(hex: &str) -> Result<[u8; 16], TokenError> {
    unhex(hex, false).ok_or_else(|| TokenError::TokenId(shown(hex)))
}

/// `N` bytes from exactly `2 × N` hex digits; uppercase ones too unless `lowercase_only`.
pub(crate) fn unhex<const N: usize>(text: &str, lowercase_only: bool) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' if !lowercase_only => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let &[high, low] = pair else {
            return None;
        };
        *byte = (digit(high)? << 4) | digit(low)?;
    }
    Some(out)
}

/// Untrusted text as an error message shows it: quoted and escaped, so it stays on one line,
/// and cut short, so a megabyte of garbage does not become a megabyte of log.
pub(crate) fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 24;
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_read_in_either_case_and_anything_else_is_refused_in_one_line() {
        let id: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        let text = hex(&id);
        assert_eq!(text, "00112233445566778899aabbccddeeff");
        assert_eq!(parse_token_id(&text).unwrap(), id);
        assert_eq!(parse_token_id(&text.to_uppercase()).unwrap(), id);
        let long = "0".repeat(1000);
        for bad in [
            "",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "00112233445566778899aabbccddeefg",
            " 0112233445566778899aabbccddeeff",
            "0011223344556677-8899aabbccddeef",
            "éé112233445566778899aabbccddee",
            "00112233445566778899aabbccdd\n\n",
            &long,
        ] {
            let e = parse_token_id(bad).unwrap_err();
            assert!(matches!(e, TokenError::TokenId(_)), "{bad:?}: {e}");
            let e = e.to_string();
            assert!(!e.contains('\n') && e.len() < 100, "{e}");
        }
        assert_eq!(unhex::<2>("aBcd", true), None);
        assert_eq!(unhex::<2>("abcd", true), Some([0xab, 0xcd]));
    }
}
