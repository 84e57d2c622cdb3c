// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the crate's tests share: fixed keys, one passenger's claims, unit embeddings.

use ed25519_dalek::SigningKey;

use crate::keys::TrustedKeys;
use crate::payload::Claims;
use crate::template::quantise;

/// The embedder the test tokens name (SFace's sha256 prefix).
pub const MODEL: [u8; 8] = [0x9d, 0x8e, 0xe5, 0x9d, 0xb2, 0xaf, 0x50, 0xad];
pub const ISSUED: i64 = 1_764_633_600;
pub const EXPIRES: i64 = ISSUED + 30 * 86_400;

/// A key made from `seed`: the same key in every run.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn trusting(keys: &[&SigningKey]) -> TrustedKeys {
    TrustedKeys::of(keys.iter().map(|k| k.verifying_key()))
}

/// Passenger p-000123's claims, token id 7…7, valid for 30 days from [`ISSUED`].
pub fn claims() -> Claims {
    Claims {
        token_id: [7; 16],
        passenger_id: "p-000123".into(),
        issued_at: ISSUED,
        expires_at: EXPIRES,
        model_sha256_prefix: MODEL,
        template: quantise(&unit(128, 0)),
    }
}

/// A deterministic unit vector of `dim` values, one per `seed`.
pub fn unit(dim: usize, seed: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim as u32)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}
