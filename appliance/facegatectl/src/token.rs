// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl token`: the enrolment office's side of passenger tokens (crate facegate-token).
//! `keygen` makes the office's key pair, `issue` enrols one photo with the gate's own elements
//! and writes the signed token as a QR code PNG and as text, `show` verifies a token (the PNG or
//! the text a QR reader returns) and prints what it says, never its template, and `revoke`
//! adds tokens or passengers to the office's signed revocation list.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use facegate_token::{Claims, RevocationList, SignedToken, TokenError, TrustedKeys};
use qrcode::{Color, EcLevel, QrCode};
use serde::Serialize;

use crate::enroll::{self, Refusal};
use crate::pipeline::Models;

/// QR error correction: M (15 % of the code may be lost) survives the blur, glare and tilt of a
/// phone held up to a gate camera better than L, and keeps the code smaller than Q or H.
const EC_LEVEL: EcLevel = EcLevel::M;
/// Pixels per module and the quiet zone (modules) of the PNG written.
const MODULE_PX: usize = 8;
const QUIET_MODULES: usize = 4;
/// The largest PNG `show` decodes, per side: a photo of a screen, not a poster.
const MAX_PNG_SIDE: u32 = 8192;

/// Everything `token` can fail with; one line each.
#[derive(Debug, thiserror::Error)]
pub enum TokenCommandError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{}: {refusal}", photo.display())]
    Photo { photo: PathBuf, refusal: Refusal },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("the embedder's identity {0:?} has no sha256 to carry")]
    Model(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TokenCommandError {
    TokenCommandError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What `issue` made, as it reports it.
#[derive(Debug, Serialize)]
pub struct Issued {
    pub png: PathBuf,
    pub text: PathBuf,
    pub token_id: String,
    pub payload_bytes: usize,
    pub text_chars: usize,
    pub qr_version: i16,
    pub qr_modules: usize,
    /// Cosine similarity of the int8 template to the photo's embedding (1: nothing lost).
    pub template_cosine: f64,
}

/// The first 8 bytes of the sha256 in the embedder's identity, which the token names it by.
fn model_prefix(identity: &str) -> Result<[u8; 8], TokenCommandError> {
    facegate_token::model_prefix(identity)
        .ok_or_else(|| TokenCommandError::Model(identity.to_string()))
}

/// Enrols `photo` (exactly one good face, as `enroll` requires) and writes the signed token
/// as `out` (a PNG) and beside it with the extension `.txt` (its text).
pub fn issue(
    key: &Path,
    passenger_id: &str,
    photo: &Path,
    valid_days: u32,
    out: &Path,
    models: &Models,
) -> Result<Issued, TokenCommandError> {
    let signing = facegate_token::load_signing_key(key)?;
    let face = enroll::embed_photo(photo, models).map_err(|refusal| TokenCommandError::Photo {
        photo: photo.to_path_buf(),
        refusal,
    })?;
    let template = facegate_token::quantise(&face.embedding);
    let template_cosine = template.cosine_to(&face.embedding);
    let issued_at = now_s();
    let claims = Claims {
        token_id: *uuid::Uuid::now_v7().as_bytes(),
        passenger_id: passenger_id.to_string(),
        issued_at,
        expires_at: issued_at + i64::from(valid_days) * 86_400,
        model_sha256_prefix: model_prefix(&face.model)?,
        template,
    };
    let text = facegate_token::issue(&claims, &signing)?;
    let code = write_code_png(&text, out)?;
    let text_path = out.with_extension("txt");
    std::fs::write(&text_path, format!("{text}\n")).map_err(|e| file_error(&text_path, e))?;
    let payload_bytes = (text.len() - facegate_token::TEXT_PREFIX.len()) / 3 * 2
        + (text.len() - facegate_token::TEXT_PREFIX.len()) % 3 / 2;
    let qr_version = match code.version() {
        qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => v,
    };
    Ok(Issued {
        png: out.to_path_buf(),
        text: text_path,
        token_id: hex(&claims.token_id),
        payload_bytes,
        text_chars: text.len(),
        qr_version,
        qr_modules: code.width(),
        template_cosine,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` as a QR code PNG (error correction M, 8 px a module); returns the code.
pub fn write_code_png(text: &str, out: &Path) -> Result<QrCode, TokenCommandError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EC_LEVEL)
        .map_err(|e| file_error(out, format!("the token does not fit a QR code: {e}")))?;
    write_png(&code, out)?;
    Ok(code)
}

/// The code as an 8-bit greyscale PNG, black modules on white with the quiet zone.
fn write_png(code: &QrCode, out: &Path) -> Result<(), TokenCommandError> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_MODULES) * MODULE_PX;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_MODULES, i / modules + QUIET_MODULES);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            pixels[y * side + mx * MODULE_PX..y * side + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    let file = std::fs::File::create(out).map_err(|e| file_error(out, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .map_err(|e| file_error(out, e))
}

/// The text in `file`: decoded from its QR code when it is a PNG, else the file's text.
pub fn read_token_text(file: &Path) -> Result<String, TokenCommandError> {
    let bytes = std::fs::read(file).map_err(|e| file_error(file, e))?;
    if !bytes.starts_with(b"\x89PNG") {
        return String::from_utf8(bytes).map_err(|_| file_error(file, "neither a PNG nor text"));
    }
    let mut decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| file_error(file, e))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width > MAX_PNG_SIDE || height > MAX_PNG_SIDE {
        return Err(file_error(
            file,
            format!("{width}x{height} is larger than {MAX_PNG_SIDE} pixels a side"),
        ));
    }
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| file_error(file, e))?;
    let channels = frame.color_type.samples();
    let stride = frame.line_size;
    let grey = |x: usize, y: usize| -> u8 {
        let at = y * stride + x * channels;
        match channels {
            1 | 2 => buffer[at],
            _ => {
                ((u16::from(buffer[at]) + u16::from(buffer[at + 1]) + u16::from(buffer[at + 2]))
                    / 3) as u8
            }
        }
    };
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width as usize, height as usize, grey);
    let grids = prepared.detect_grids();
    let grid = grids
        .first()
        .ok_or_else(|| file_error(file, "no QR code found in the picture"))?;
    let (_, text) = grid
        .decode()
        .map_err(|e| file_error(file, format!("the QR code does not decode: {e}")))?;
    Ok(text)
}

/// What `revoke` made.
#[derive(Debug)]
pub struct Revoked {
    pub list: RevocationList,
    /// Entries that were not on the list before.
    pub added: usize,
}

/// Adds `tokens` (ids, 32 hex digits) and `passengers` to the revocation list `list` (read and
/// verified with `key`'s public key when it exists), signs it with `key` and replaces the file
/// atomically, so a gate reloading it reads the old list or the new, never half of one. The new
/// list is issued later than the old: a gate keeps the later of two lists.
pub fn revoke(
    key: &Path,
    list: &Path,
    tokens: &[String],
    passengers: &[String],
) -> Result<Revoked, TokenCommandError> {
    if tokens.is_empty() && passengers.is_empty() {
        return Err(file_error(
            list,
            "nothing to revoke: give --token or --passenger",
        ));
    }
    let signing = facegate_token::load_signing_key(key)?;
    let own = TrustedKeys::of([signing.verifying_key()]);
    let mut revocations = if list.exists() {
        RevocationList::load(list, &own)?.0
    } else {
        RevocationList::default()
    };
    let before = revocations.token_ids.len() + revocations.passenger_ids.len();
    for token in tokens {
        revocations
            .token_ids
            .insert(facegate_token::parse_token_id(token)?);
    }
    revocations.passenger_ids.extend(passengers.iter().cloned());
    let added = revocations.token_ids.len() + revocations.passenger_ids.len() - before;
    revocations.issued_at = now_s().max(revocations.issued_at + 1);
    let text = revocations.sign(&signing)?;
    let dir = list
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut staged = tempfile::NamedTempFile::new_in(dir).map_err(|e| file_error(list, e))?;
    use std::io::Write;
    staged
        .write_all(text.as_bytes())
        .and_then(|()| staged.as_file().sync_all())
        .map_err(|e| file_error(list, e))?;
    staged
        .persist(list)
        .map_err(|e| file_error(list, e.error))?;
    Ok(Revoked {
        list: revocations,
        added,
    })
}

/// What `show` prints: the verified claims (never the template), and whether the token is
/// expired at the time of showing.
#[derive(Debug, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub token: SignedToken,
    pub expired: bool,
}

/// Verifies the token in `file` against the public keys in `trusted`.
pub fn show(file: &Path, trusted: &Path) -> Result<Shown, TokenCommandError> {
    let text = read_token_text(file)?;
    let trusted = TrustedKeys::load(trusted)?;
    let token = facegate_token::parse_text(&text, &trusted)?;
    let expired = token.claims.expires_at <= now_s();
    Ok(Shown { token, expired })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_adds_to_a_signed_list_and_refuses_another_office_s_list() {
        let dir = tempfile::tempdir().unwrap();
        facegate_token::generate_key(dir.path(), "a").unwrap();
        facegate_token::generate_key(dir.path(), "b").unwrap();
        let (key_a, key_b) = (dir.path().join("a.key.pem"), dir.path().join("b.key.pem"));
        let list = dir.path().join("revoked");
        let id = "0123456789abcdef0123456789ABCDEF".to_owned();
        let first = revoke(&key_a, &list, std::slice::from_ref(&id), &[]).unwrap();
        assert_eq!((first.added, first.list.token_ids.len()), (1, 1));
        let second = revoke(&key_a, &list, &[id], &["P-9".into()]).unwrap();
        assert_eq!(second.added, 1, "the token was on it already");
        assert!(second.list.issued_at > first.list.issued_at);
        let error = revoke(&key_b, &list, &[], &["P-1".into()]).unwrap_err();
        assert!(error.to_string().contains("untrusted key"), "{error}");
        let error = revoke(&key_a, &list, &["12".into()], &[]).unwrap_err();
        assert!(error.to_string().contains("32 hex digits"), "{error}");
        assert!(revoke(&key_a, &list, &[], &[]).is_err());
    }
}
