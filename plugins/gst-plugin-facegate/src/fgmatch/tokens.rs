// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgmatch's token side: the codes fgqr read, handed to facegate-token's [`TokenDesk`], and the
//! 1:1 threshold the embedder's calibration gives for one comparison.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use facegate_meta::{Identification, TokenSighting, TokenVerdict};
use facegate_token::{RefusalKind, Shown, TokenDesk};
use facegate_vision::gallery::Match as Candidate;
use facegate_vision::match_rule::{self, MatchRule};
use gst::glib;

/// [`Identification`] as a GEnum, for gst-inspect and gst-launch (`identification=token`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, glib::Enum)]
#[enum_type(name = "GstFgMatchIdentification")]
pub enum IdentificationMode {
    #[default]
    #[enum_value(name = "gallery: 1:N against the gallery", nick = "gallery")]
    Gallery,
    #[enum_value(
        name = "token: 1:1 against the template of the token shown, no gallery",
        nick = "token"
    )]
    Token,
    #[enum_value(
        name = "token-or-gallery: a token when one is shown, else the gallery",
        nick = "token-or-gallery"
    )]
    TokenOrGallery,
}

impl From<IdentificationMode> for Identification {
    fn from(mode: IdentificationMode) -> Identification {
        match mode {
            IdentificationMode::Gallery => Identification::Gallery,
            IdentificationMode::Token => Identification::Token,
            IdentificationMode::TokenOrGallery => Identification::TokenOrGallery,
        }
    }
}

/// Everything the token side can fail with at start or on a frame; one line each.
#[derive(Debug, thiserror::Error)]
pub enum TokenSideError {
    #[error(
        "no trusted-keys set: set fgmatch's trusted-keys to the directory of the offices' public keys"
    )]
    NoTrustedKeys,
    #[error(transparent)]
    Token(#[from] facegate_token::TokenError),
    #[error("{0}; or set fgmatch's threshold")]
    Calibration(#[from] facegate_vision::calibration::CalibrationError),
    #[error("faces arrive embedded by {0}, whose identity carries no sha256 a token could name")]
    Model(String),
}

pub struct TokenSide {
    desk: TokenDesk,
    rule: MatchRule,
    /// fgmatch's `threshold`, when set: overrides the calibration here too.
    fixed: Option<f64>,
    /// The 1:1 threshold, for the model it was computed for.
    calibrated: Option<(String, f64)>,
    poll: Option<Duration>,
    last_poll: Instant,
}

impl TokenSide {
    pub fn open(
        trusted_keys: Option<&str>,
        revocations: Option<&str>,
        window: Duration,
        poll: Duration,
        rule: MatchRule,
        fixed: Option<f64>,
    ) -> Result<TokenSide, TokenSideError> {
        let trusted = trusted_keys
            .filter(|dir| !dir.is_empty())
            .ok_or(TokenSideError::NoTrustedKeys)?;
        let revocations = revocations.filter(|f| !f.is_empty()).map(PathBuf::from);
        Ok(TokenSide {
            desk: TokenDesk::open(Path::new(trusted), revocations, window)?,
            rule,
            fixed,
            calibrated: None,
            poll: (!poll.is_zero()).then_some(poll),
            last_poll: Instant::now(),
        })
    }

    /// Checks the revocation list when `poll-interval` has passed: `Some` when it was reloaded
    /// (what it holds now) or could not be (the last good list stays in force).
    pub fn poll_revocations(&mut self) -> Option<Result<String, facegate_token::TokenError>> {
        let poll = self.poll?;
        if self.last_poll.elapsed() < poll {
            return None;
        }
        self.last_poll = Instant::now();
        self.desk.reload_revocations()
    }

    /// Takes the QR codes fgqr put on the buffer: each is presented to the desk, and removed
    /// from the buffer so that a token's text (which holds its template) travels no further.
    pub fn take_codes(
        &mut self,
        buffer: &mut gst::BufferRef,
        running_time: Option<gst::ClockTime>,
    ) {
        let at = running_time.map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
        for text in facegate_meta::codes(buffer).flatten() {
            self.desk.present(&text, at);
        }
        facegate_meta::remove_codes(buffer);
    }

    /// The token shown within the window, judged for faces embedded by `model`.
    pub fn shown(
        &mut self,
        running_time: Option<gst::ClockTime>,
        model: &str,
    ) -> Result<Option<TokenSighting>, TokenSideError> {
        self.follow_model(model)?;
        let at = running_time.map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
        let prefix = facegate_token::model_prefix(model)
            .ok_or_else(|| TokenSideError::Model(model.to_owned()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(self.desk.shown(at, prefix, now).map(|shown| match shown {
            Shown::Admitted(token) => TokenSighting {
                verdict: TokenVerdict::Valid,
                token_id: Some(facegate_token::hex(&token.claims().token_id)),
                passenger_id: Some(token.claims().passenger_id.clone()),
                reason: None,
            },
            Shown::Refused(refused) => TokenSighting {
                verdict: match refused.kind {
                    RefusalKind::Invalid => TokenVerdict::Invalid,
                    RefusalKind::Expired => TokenVerdict::Expired,
                    RefusalKind::Revoked => TokenVerdict::Revoked,
                },
                token_id: refused.token_id.map(|id| facegate_token::hex(&id)),
                passenger_id: refused.passenger_id.clone(),
                reason: Some(refused.reason.clone()),
            },
        }))
    }

    /// The admitted token's passenger as the face's only candidate, scored 1:1.
    pub fn candidate(&self, embedding: &[f32]) -> Option<Candidate> {
        let token = self.desk.admitted()?;
        let passenger = &token.claims().passenger_id;
        Some(Candidate {
            id: passenger.clone(),
            label: passenger.clone(),
            similarity: token.similarity(embedding) as f32,
        })
    }

    /// The 1:1 threshold in force (infinite before the first face: nothing matches).
    pub fn threshold(&self) -> f64 {
        match (self.fixed, &self.calibrated) {
            (Some(fixed), _) => fixed,
            (None, Some((_, threshold))) => *threshold,
            (None, None) => f64::INFINITY,
        }
    }

    /// Computes the 1:1 threshold from `model`'s calibration, once per model.
    fn follow_model(&mut self, model: &str) -> Result<(), TokenSideError> {
        if self.fixed.is_some() || self.calibrated.as_ref().is_some_and(|(m, _)| m == model) {
            return Ok(());
        }
        let calibration = match_rule::find_calibration(&match_rule::calibration_dir(), model)?;
        let threshold = self.rule.standing(&calibration, 1)?.threshold;
        self.calibrated = Some((model.to_owned(), threshold));
        Ok(())
    }
}
