// SPDX-License-Identifier: MIT OR Apache-2.0
//! The payload (the table in the crate's documentation): writing, signing, reading, verifying.
//! Reading never panics: every length is checked before it is used, and every refusal is one
//! line saying which field is wrong.

use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::Serialize;

use crate::keys::{KeyId, TrustedKeys};
use crate::template::Quantised;
use crate::{TokenError, hex};

/// What starts a token's text form (QR alphanumeric characters only).
pub const TEXT_PREFIX: &str = "FGT1:";
/// The payload version written and read.
pub const VERSION: u8 = 1;

const MAGIC: &[u8; 3] = b"FGT";
const SIGNATURE_LEN: usize = 64;
/// The longest passenger id: an opaque reference into the office's records, not a name.
pub(crate) const MAX_PASSENGER_ID: usize = 64;
/// The largest template dimension read (today's embedders give 128 or 512).
const MAX_DIM: usize = 1024;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claims {
    #[serde(serialize_with = "as_hex")]
    pub token_id: [u8; 16],
    /// Opaque to the gate: journalled, never shown.
    pub passenger_id: String,
    /// Seconds since the Unix epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    /// The first 8 bytes of the embedder's model sha256 (its identity's `@sha256:` part).
    #[serde(serialize_with = "as_hex")]
    pub model_sha256_prefix: [u8; 8],
    #[serde(skip)]
    pub template: Quantised,
}

fn as_hex<S: serde::Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}

/// A token whose signature has been checked against a trusted key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignedToken {
    #[serde(serialize_with = "key_hex")]
    pub key_id: KeyId,
    #[serde(flatten)]
    pub claims: Claims,
    /// The payload's size in bytes (its text is about 1.5 times longer).
    pub payload_bytes: usize,
}

fn key_hex<S: serde::Serializer>(id: &KeyId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

impl Claims {
    fn check(&self) -> Result<(), TokenError> {
        let id = self.passenger_id.len();
        if id == 0 || id > MAX_PASSENGER_ID {
            return Err(TokenError::Claim(format!(
                "the passenger id must be 1..={MAX_PASSENGER_ID} bytes (got {id})"
            )));
        }
        let dim = self.template.values.len();
        if dim == 0 || dim > MAX_DIM {
            return Err(TokenError::Claim(format!(
                "the template must have 1..={MAX_DIM} values (got {dim})"
            )));
        }
        if !(self.template.scale.is_finite() && self.template.scale > 0.0) {
            return Err(TokenError::Claim(
                "the template's scale must be positive".into(),
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(TokenError::Claim(
                "it must expire after it is issued".into(),
            ));
        }
        Ok(())
    }

    fn write(&self, key_id: KeyId, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&key_id.0);
        out.extend_from_slice(&self.token_id);
        out.extend_from_slice(&self.issued_at.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        out.extend_from_slice(&self.model_sha256_prefix);
        out.push(self.passenger_id.len() as u8);
        out.extend_from_slice(self.passenger_id.as_bytes());
        out.extend_from_slice(&(self.template.values.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.template.scale.to_le_bytes());
        out.extend(self.template.values.iter().map(|&v| v as u8));
    }
}

/// Signs `claims` with `key`; returns the token's text form.
pub fn issue(claims: &Claims, key: &SigningKey) -> Result<String, TokenError> {
    claims.check()?;
    let mut payload = Vec::with_capacity(64 + claims.template.values.len() + SIGNATURE_LEN);
    claims.write(KeyId::of(&key.verifying_key()), &mut payload);
    let signature = key.sign(&payload);
    payload.extend_from_slice(&signature.to_bytes());
    Ok(format!("{TEXT_PREFIX}{}", base45::encode(&payload)))
}

/// A cursor over the payload that names the field it ran out in.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], TokenError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(TokenError::Malformed(format!(
                "cut short in the {field} (byte {} of {})",
                self.at,
                self.bytes.len()
            )));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], TokenError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
}

/// Reads a token's text (what a QR reader returns; surrounding whitespace is ignored) and
/// verifies its signature against `trusted`. Expiry and revocation are the caller's to check:
/// they depend on the gate's clock and lists.
pub fn parse_text(text: &str, trusted: &TrustedKeys) -> Result<SignedToken, TokenError> {
    let text = text.trim();
    let Some(encoded) = text.strip_prefix(TEXT_PREFIX) else {
        return Err(TokenError::NotAToken(format!(
            "it does not start with {TEXT_PREFIX:?}"
        )));
    };
    let payload = base45::decode(encoded)
        .map_err(|_| TokenError::NotAToken("not Base45 after the prefix".into()))?;
    let mut r = Reader {
        bytes: &payload,
        at: 0,
    };
    if r.take(3, "magic")? != MAGIC {
        return Err(TokenError::NotAToken("wrong magic bytes".into()));
    }
    let version = r.take(1, "version")?[0];
    if version != VERSION {
        return Err(TokenError::Version(version));
    }
    let key_id = KeyId(r.array("key id")?);
    let token_id = r.array("token id")?;
    let issued_at = i64::from_le_bytes(r.array("issue time")?);
    let expires_at = i64::from_le_bytes(r.array("expiry time")?);
    let model_sha256_prefix = r.array("model")?;
    let id_len = usize::from(r.take(1, "passenger id length")?[0]);
    if id_len == 0 || id_len > MAX_PASSENGER_ID {
        return Err(TokenError::Malformed(format!(
            "passenger id length {id_len} is not 1..={MAX_PASSENGER_ID}"
        )));
    }
    let passenger_id = std::str::from_utf8(r.take(id_len, "passenger id")?)
        .map_err(|_| TokenError::Malformed("the passenger id is not UTF-8".into()))?
        .to_string();
    let dim = usize::from(u16::from_le_bytes(r.array("template dimension")?));
    if dim == 0 || dim > MAX_DIM {
        return Err(TokenError::Malformed(format!(
            "template dimension {dim} is not 1..={MAX_DIM}"
        )));
    }
    let scale = f32::from_le_bytes(r.array("template scale")?);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(TokenError::Malformed(format!(
            "template scale {scale} is not positive"
        )));
    }
    let values = r.take(dim, "template")?.iter().map(|&b| b as i8).collect();
    let signed_len = r.at;
    let signature = Signature::from_bytes(&r.array::<SIGNATURE_LEN>("signature")?);
    if r.at != payload.len() {
        return Err(TokenError::Malformed(format!(
            "{} bytes after the signature",
            payload.len() - r.at
        )));
    }
    let key = trusted
        .get(&key_id)
        .ok_or(TokenError::UntrustedKey(key_id))?;
    key.verify_strict(&payload[..signed_len], &signature)
        .map_err(|_| TokenError::BadSignature(key_id))?;
    Ok(SignedToken {
        key_id,
        claims: Claims {
            token_id,
            passenger_id,
            issued_at,
            expires_at,
            model_sha256_prefix,
            template: Quantised { scale, values },
        },
        payload_bytes: payload.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn an_issued_token_reads_back_with_its_claims_and_key() {
        let office = key(1);
        let text = issue(&claims(), &office).unwrap();
        assert!(text.starts_with(TEXT_PREFIX));
        // QR alphanumeric characters only.
        assert!(
            text.chars()
                .all(|c| "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(c))
        );
        let trusted = TrustedKeys::of([office.verifying_key()]);
        let token = parse_text(&format!("  {text}\n"), &trusted).unwrap();
        assert_eq!(token.claims, claims());
        assert_eq!(token.key_id, KeyId::of(&office.verifying_key()));
        assert_eq!(
            token.payload_bytes,
            4 + 8 + 16 + 16 + 8 + 1 + 8 + 2 + 4 + 128 + 64
        );
        let json = serde_json::to_value(&token).unwrap();
        assert_eq!(json["passenger_id"], "p-000123");
        assert_eq!(json["model_sha256_prefix"], "9d8ee59db2af50ad");
        assert!(
            json.get("template").is_none(),
            "the template is never printed"
        );
    }

    #[test]
    fn any_changed_byte_is_refused_and_another_key_is_untrusted() {
        let office = key(1);
        let trusted = TrustedKeys::of([office.verifying_key()]);
        let text = issue(&claims(), &office).unwrap();
        let payload = base45::decode(&text[TEXT_PREFIX.len()..]).unwrap();
        for at in 0..payload.len() {
            let mut changed = payload.clone();
            changed[at] ^= 0x01;
            let forged = format!("{TEXT_PREFIX}{}", base45::encode(&changed));
            let e = parse_text(&forged, &trusted).expect_err("a changed byte is refused");
            assert!(!e.to_string().contains('\n'));
        }
        let stranger = issue(&claims(), &key(2)).unwrap();
        assert!(matches!(
            parse_text(&stranger, &trusted),
            Err(TokenError::UntrustedKey(_))
        ));
        // Both keys trusted (a rotation): both verify; the old one removed: its tokens do not.
        let both = TrustedKeys::of([office.verifying_key(), key(2).verifying_key()]);
        parse_text(&text, &both).unwrap();
        parse_text(&stranger, &both).unwrap();
    }

    #[test]
    fn truncated_oversized_wrong_version_and_garbage_are_one_line_refusals() {
        let office = key(1);
        let trusted = TrustedKeys::of([office.verifying_key()]);
        let text = issue(&claims(), &office).unwrap();
        let payload = base45::decode(&text[TEXT_PREFIX.len()..]).unwrap();
        let encode = |bytes: &[u8]| format!("{TEXT_PREFIX}{}", base45::encode(bytes));
        for cut in 0..payload.len() {
            let e = parse_text(&encode(&payload[..cut]), &trusted).unwrap_err();
            assert!(
                matches!(e, TokenError::Malformed(_) | TokenError::NotAToken(_)),
                "{cut}: {e}"
            );
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(
            parse_text(&encode(&longer), &trusted)
                .unwrap_err()
                .to_string()
                .contains("1 bytes after the signature")
        );
        let mut version = payload.clone();
        version[3] = 9;
        assert_eq!(
            parse_text(&encode(&version), &trusted).unwrap_err(),
            TokenError::Version(9)
        );
        for garbage in ["", "hello", "FGT1:", "FGT1:abc", "FGT1:%%%%"] {
            let e = parse_text(garbage, &trusted).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{garbage:?}: {e}");
        }
        // Random bytes after the prefix: never a panic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert!(parse_text(&encode(&bytes), &trusted).is_err());
        }
    }

    #[test]
    fn claims_that_cannot_be_carried_are_refused_at_issue() {
        let office = key(1);
        for (change, says) in [
            (
                Box::new(|c: &mut Claims| c.passenger_id.clear()) as Box<dyn Fn(&mut Claims)>,
                "passenger id",
            ),
            (
                Box::new(|c: &mut Claims| c.passenger_id = "x".repeat(65)),
                "passenger id",
            ),
            (
                Box::new(|c: &mut Claims| c.expires_at = c.issued_at),
                "expire",
            ),
            (
                Box::new(|c: &mut Claims| c.template.values.clear()),
                "template",
            ),
        ] {
            let mut c = claims();
            change(&mut c);
            let e = issue(&c, &office).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
