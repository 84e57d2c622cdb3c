// SPDX-License-Identifier: MIT OR Apache-2.0
//! The face corpus (models/corpus.toml) as a cast of walk-ups: each person's photos that show
//! exactly one face big enough to enrol, with the face's box and embedding, and the split of the
//! corpus-walk-up test (half enrolled, half strangers).

use std::path::{Path, PathBuf};

use anyhow::Context;
use facegate_dev_assets::AssetDir;
use facegatectl::enroll;
use facegatectl::evaluate::corpus;
use facegatectl::photo_embedder::PhotoEmbedder;
use facegatectl::pipeline::Models;

use crate::walkup_video::WalkupPhoto;

/// One usable photo: where its face is, and its enrolment embedding.
#[derive(Clone, Debug)]
pub struct CorpusFace {
    pub walkup: WalkupPhoto,
    pub embedding: Vec<f32>,
}

/// One identity of the corpus with its usable photos, in the corpus's order.
#[derive(Clone, Debug)]
pub struct CorpusPerson {
    pub id: String,
    pub faces: Vec<CorpusFace>,
}

/// Every identity of the corpus in `dir` with at least one usable photo, each photo embedded as
/// enrolment embeds it.
pub fn usable(dir: &Path, models: &Models) -> anyhow::Result<Vec<CorpusPerson>> {
    let identities = corpus::read(dir).with_context(|| {
        format!(
            "the face corpus is fetched by `make setup` ({})",
            AssetDir::Corpus.variable()
        )
    })?;
    let mut embedder = PhotoEmbedder::new(models, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(identities
        .into_iter()
        .map(|identity| {
            let faces = identity
                .photos
                .iter()
                .filter_map(|photo| {
                    let face = enroll::embed_photo_with(&mut embedder, photo).ok()?;
                    Some(CorpusFace {
                        walkup: WalkupPhoto {
                            name: corpus::display_name(&identity.name, photo),
                            photo: photo.clone(),
                            face: face.bbox,
                        },
                        embedding: face.embedding,
                    })
                })
                .collect();
            CorpusPerson {
                id: identity.name,
                faces,
            }
        })
        .filter(|person| !person.faces.is_empty())
        .collect())
}

/// One person of the corpus walk-ups: enrolled with one photo, or a stranger.
#[derive(Clone, Debug)]
pub struct Cast {
    pub id: String,
    pub enrolled_with: Option<PathBuf>,
    pub walkup: WalkupPhoto,
}

/// Half the usable people enrolled: everyone with two photos or more (enrolled with the first,
/// walking up with the second), and of those with one photo as many as make half, spread evenly
/// in name order (they walk up with the photo they were enrolled with).
pub fn half_enrolled(usable: &[CorpusPerson]) -> Vec<Cast> {
    let with_two = usable.iter().filter(|p| p.faces.len() >= 2).count();
    let singles = usable.len() - with_two;
    let singles_enrolled = (usable.len() / 2).saturating_sub(with_two).min(singles);
    // The j-th enrolled single is the one at j * singles / singles_enrolled.
    let chosen: Vec<usize> = (0..singles_enrolled)
        .map(|j| j * singles / singles_enrolled)
        .collect();
    let mut single = 0;
    let mut cast = Vec::new();
    for person in usable {
        let (enrolled_with, walkup) = match person.faces.as_slice() {
            [only] => {
                let enrolled = chosen.contains(&single);
                single += 1;
                (
                    enrolled.then(|| only.walkup.photo.clone()),
                    only.walkup.clone(),
                )
            }
            [first, second, ..] => (Some(first.walkup.photo.clone()), second.walkup.clone()),
            [] => continue,
        };
        cast.push(Cast {
            id: person.id.clone(),
            enrolled_with,
            walkup,
        });
    }
    cast
}
