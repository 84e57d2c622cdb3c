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

mod keys;
mod payload;
mod template;

pub use keys::{KeyId, TrustedKeys, generate_key, load_signing_key, load_verifying_key};
pub use payload::{Claims, SignedToken, TEXT_PREFIX, VERSION, issue, parse_text};
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
    /// Signed by a key the gate does not trust.
    #[error("token signed by untrusted key {0}")]
    UntrustedKey(KeyId),
    /// The signature does not match the payload (a changed byte, a forged token).
    #[error("token signature does not verify (key {0})")]
    BadSignature(KeyId),
    /// A key file that cannot be read or is not an Ed25519 key.
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
    /// A claim that cannot be issued (an empty or too long passenger id, a bad template).
    #[error("cannot issue the token: {0}")]
    Claim(String),
}
