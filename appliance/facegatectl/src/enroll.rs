// SPDX-License-Identifier: MIT OR Apache-2.0
//! Enrolment: one good face per photo, embedded by the gate's own elements, into the gallery.

use std::fmt;
use std::path::{Path, PathBuf};

use facegate_vision::gallery::{Gallery, GalleryError};
use facegate_vision::template::{self, TemplateError};
use thiserror::Error;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::photo_embedder::PhotoEmbedder;
use crate::pipeline::Models;

/// Faces with the eyes closer than this (in photo pixels) are too small to embed reliably:
/// the aligned crop would be upscaled well beyond the 35 px eye distance SFace was trained on.
pub const MIN_EYE_DISTANCE: f32 = 24.0;

/// The detector input used for enrolment photos: portraits are large, and precise landmarks matter more than speed.
pub const ENROL_INPUT_SIZE: u32 = 640;

/// One person to enrol, from one photo or several (one template serves them all:
/// `facegate_vision::template`).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: String,
    /// `None`: the label the person already has when replacing, else the id.
    pub label: Option<String>,
    /// At least one.
    pub photos: Vec<PathBuf>,
}

impl Request {
    /// A request with one photo.
    pub fn one_photo(id: impl Into<String>, label: Option<String>, photo: PathBuf) -> Request {
        Request {
            id: id.into(),
            label,
            photos: vec![photo],
        }
    }

    fn photo_list(&self) -> String {
        self.photos
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a photo was not enrolled.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error("no such file")]
    Missing,
    #[error("is a directory, not a photo")]
    Directory,
    #[error("not a regular file")]
    NotAFile,
    #[error("cannot read it as an image: {0}")]
    Unreadable(String),
    #[error("{}", crate::jpeg::TRUNCATED)]
    TruncatedJpeg,
    #[error("no face found")]
    NoFace,
    #[error("{0} faces found; enrolment needs a photo of exactly one person")]
    SeveralFaces(usize),
    #[error("face too small: {0:.0} px between the eyes, at least {MIN_EYE_DISTANCE:.0} needed")]
    TooSmall(f32),
    #[error("the face could not be embedded")]
    NotEmbedded,
    #[error("the label is empty (leave the label out to use the id)")]
    EmptyLabel,
    #[error("no photo given")]
    NoPhoto,
    /// One of several photos of a person was refused: the person is not enrolled from the rest.
    #[error("{}: {refusal}; none of this person's photos was enrolled", photo.display())]
    OnePhotoOfSeveral {
        photo: PathBuf,
        refusal: Box<Refusal>,
    },
    #[error("{}: {problem}", photo.display())]
    NotOnePerson {
        photo: PathBuf,
        problem: TemplateError,
    },
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The models could not run at all: no photo can be enrolled, so the batch stops.
    #[error("{0}")]
    Setup(String),
}

/// Why a whole batch failed; nothing of it was committed.
#[derive(Debug, Error)]
pub enum EnrollError {
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error("{0}")]
    Setup(String),
}

/// A photo's single face, ready for the gallery.
#[derive(Clone, Debug)]
pub struct PhotoFace {
    pub model: String,
    pub embedding: Vec<f32>,
    pub bbox: (u32, u32, u32, u32),
}

/// Refuses what is not a file to read a photo from, saying what it is instead.
fn check_photo_path(photo: &Path) -> Result<(), Refusal> {
    match std::fs::metadata(photo) {
        Ok(metadata) if metadata.is_file() => match crate::jpeg::is_truncated(photo) {
            Ok(false) => Ok(()),
            Ok(true) => Err(Refusal::TruncatedJpeg),
            Err(error) => Err(Refusal::Unreadable(error.to_string())),
        },
        Ok(metadata) if metadata.is_dir() => Err(Refusal::Directory),
        Ok(_) => Err(Refusal::NotAFile),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(Refusal::Missing),
        Err(error) => Err(Refusal::Unreadable(error.to_string())),
    }
}

/// Detects and embeds the one face of `photo` with fgdetect ! fgembed, loading the models for
/// it alone (a batch keeps them loaded: [`PhotoEmbedder`]).
pub fn embed_photo(photo: &Path, models: &Models) -> Result<PhotoFace, Refusal> {
    check_photo_path(photo)?;
    embed_photo_with(&mut PhotoEmbedder::new(models, 0)?, photo)
}

/// `embed_photo` with models already loaded.
pub fn embed_photo_with(embedder: &mut PhotoEmbedder, photo: &Path) -> Result<PhotoFace, Refusal> {
    check_photo_path(photo)?;
    let faces = embedder.faces(photo)?;
    let face = match faces.len() {
        0 => return Err(Refusal::NoFace),
        1 => faces.into_iter().next().ok_or(Refusal::NoFace)?,
        n => return Err(Refusal::SeveralFaces(n)),
    };
    let eye_distance = face.detection.as_ref().map_or(0.0, |d| {
        let [[rx, ry], [lx, ly], ..] = d.landmarks;
        ((lx - rx).powi(2) + (ly - ry).powi(2)).sqrt()
    });
    if eye_distance < MIN_EYE_DISTANCE {
        return Err(Refusal::TooSmall(eye_distance));
    }
    let embedding = face.embedding.ok_or(Refusal::NotEmbedded)?;
    Ok(PhotoFace {
        model: embedding.model,
        embedding: embedding.data,
        bbox: face.bbox,
    })
}

/// A person's template from their photos: one photo's embedding, or the checked mean of
/// several (each photo refused as `embed_photo` would, and all of them found to be one person).
pub fn embed_person(photos: &[PathBuf], models: &Models) -> Result<PhotoFace, Refusal> {
    let first = photos.first().ok_or(Refusal::NoPhoto)?;
    check_photo_path(first)?;
    embed_person_with(&mut PhotoEmbedder::new(models, 0)?, photos)
}

/// `embed_person` with models already loaded.
pub fn embed_person_with(
    embedder: &mut PhotoEmbedder,
    photos: &[PathBuf],
) -> Result<PhotoFace, Refusal> {
    let (first, rest) = photos.split_first().ok_or(Refusal::NoPhoto)?;
    if rest.is_empty() {
        return embed_photo_with(embedder, first);
    }
    let mut faces = Vec::with_capacity(photos.len());
    for photo in photos {
        match embed_photo_with(embedder, photo) {
            Ok(face) => faces.push(face),
            Err(Refusal::Setup(message)) => return Err(Refusal::Setup(message)),
            Err(refusal) => {
                return Err(Refusal::OnePhotoOfSeveral {
                    photo: photo.clone(),
                    refusal: Box::new(refusal),
                });
            }
        }
    }
    let embeddings: Vec<&[f32]> = faces.iter().map(|f| f.embedding.as_slice()).collect();
    let embedding = template::of_one_person(&embeddings).map_err(|problem| {
        let photo = match &problem {
            TemplateError::NotOnePerson { index, .. } => photos[*index].clone(),
            _ => first.clone(),
        };
        Refusal::NotOnePerson { photo, problem }
    })?;
    let first = faces.swap_remove(0);
    Ok(PhotoFace { embedding, ..first })
}

/// A request's template, or why there is none.
type Embedded = Result<PhotoFace, Refusal>;

/// Every request's template, the photos shared out among one [`PhotoEmbedder`] per core (each
/// loads the models once); `embedded` is called as each request is done, in the order they
/// finish. The first failure of the models stops the batch.
fn embed_requests(
    requests: Vec<Request>,
    models: &Models,
    embedded: &mut impl FnMut(&Request),
) -> Result<Vec<(Request, Embedded)>, EnrollError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(requests.len())
        .max(1);
    // One core per worker: ONNX Runtime's own threads would only contend with the other worker.
    let threads = if workers > 1 { 1 } else { 0 };
    let next = AtomicUsize::new(0);
    let mut faces: Vec<Option<Embedded>> = std::iter::repeat_with(|| None)
        .take(requests.len())
        .collect();
    let mut setup_failure = None;
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        for _ in 0..workers {
            let (done, next, requests) = (done.clone(), &next, &requests);
            scope.spawn(move || {
                let mut embedder: Option<Result<PhotoEmbedder, String>> = None;
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(request) = requests.get(index) else {
                        return;
                    };
                    let face = if request.label.as_deref() == Some("") {
                        Err(Refusal::EmptyLabel)
                    } else {
                        match embedder.get_or_insert_with(|| {
                            PhotoEmbedder::new(models, threads).map_err(|e| e.to_string())
                        }) {
                            Ok(embedder) => embed_person_with(embedder, &request.photos),
                            Err(message) => Err(Refusal::Setup(message.clone())),
                        }
                    };
                    if done.send((index, face)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        for (index, face) in finished {
            if let Err(Refusal::Setup(message)) = &face {
                // The other workers stop at their next request.
                next.store(requests.len(), Ordering::SeqCst);
                setup_failure.get_or_insert_with(|| message.clone());
                continue;
            }
            embedded(&requests[index]);
            faces[index] = Some(face);
        }
    });
    if let Some(message) = setup_failure {
        return Err(EnrollError::Setup(message));
    }
    Ok(requests
        .into_iter()
        .zip(faces)
        .map(|(request, face)| (request, face.expect("every request is embedded")))
        .collect())
}

/// What happened to one request.
#[derive(Debug)]
pub struct Outcome {
    /// As asked, with the label it was enrolled under filled in.
    pub request: Request,
    pub result: Result<(), Refusal>,
    /// Someone else in the gallery the new template matches under the gate's default rule.
    pub lookalike: Option<Lookalike>,
}

/// An enrolled person whom a newly enrolled one matches: the same person under a second id,
/// or a lookalike. The gate would deny both `ambiguous` (or grant the wrong one when the other
/// is not in view), so the operator is told; the enrolment itself stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookalike {
    pub id: String,
    pub similarity: f32,
    /// The gate's threshold for the gallery's new size (`crate::standing::threshold_for`).
    pub threshold: f64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Request { id, label, .. } = &self.request;
        let photos = self.request.photo_list();
        match &self.result {
            Ok(()) => {
                write!(
                    f,
                    "enrolled {id} ({}) from {photos}",
                    label.as_deref().unwrap_or(id),
                )?;
                match &self.lookalike {
                    Some(other) => write!(
                        f,
                        "; warning: matches {} (similarity {:.4}, the gate's threshold {:.4}): \
                         the same person twice, or a lookalike the gate may take for them",
                        other.id, other.similarity, other.threshold
                    ),
                    None => Ok(()),
                }
            }
            // The photo at fault leads the reason already.
            Err(refusal @ (Refusal::OnePhotoOfSeveral { .. } | Refusal::NotOnePerson { .. })) => {
                write!(f, "refused  {id}: {refusal}")
            }
            Err(refusal) => write!(f, "refused  {photos}: {refusal}"),
        }
    }
}

/// The result of a batch: every outcome and the gallery generation written.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub generation: Option<u64>,
    pub gallery_size: usize,
}

impl Report {
    pub fn refused(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }
}

/// Enrols every request whose photo has exactly one good face, then writes one new gallery
/// generation with all of them; refused photos are reported and change nothing. `progress` is
/// told each outcome once the batch is committed (see `enroll_batch`).
pub fn enroll_all(
    gallery_dir: &Path,
    requests: Vec<Request>,
    replace: bool,
    models: &Models,
    progress: impl FnMut(&Outcome),
) -> Result<Report, EnrollError> {
    enroll_batch(gallery_dir, requests, replace, models, |_| {}, progress)
}

/// `enroll_all`, in three steps. Every photo is embedded first, without the gallery's lock
/// (embedding takes a good fraction of a second a photo, and another writer must not wait on
/// it); `embedded` is called after each. Then the gallery is opened (or created) under its lock,
/// every face staged and the batch committed as one generation. Only then is `progress` told
/// the outcomes, so that nothing is reported enrolled that is not committed, and a reader that
/// stops reading (`| head -1`) can never abandon a commit. A damaged or unreadable gallery stops
/// the batch before any photo is embedded.
pub fn enroll_batch(
    gallery_dir: &Path,
    requests: Vec<Request>,
    replace: bool,
    models: &Models,
    mut embedded: impl FnMut(&Request),
    mut progress: impl FnMut(&Outcome),
) -> Result<Report, EnrollError> {
    match Gallery::open(gallery_dir) {
        Ok(_) | Err(GalleryError::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let faces = embed_requests(requests, models, &mut embedded)?;

    let mut gallery: Option<Gallery> = None;
    let mut outcomes = Vec::with_capacity(faces.len());
    // Each staged outcome's template, to look for lookalikes once the whole batch is staged.
    let mut templates = Vec::with_capacity(faces.len());
    let mut staged = 0;
    for (mut request, face) in faces {
        let face = match face {
            Ok(face) => face,
            Err(refusal) => {
                outcomes.push(Outcome {
                    request,
                    result: Err(refusal),
                    lookalike: None,
                });
                templates.push(None);
                continue;
            }
        };
        let gallery = match &mut gallery {
            Some(gallery) => gallery,
            slot => slot.insert(Gallery::open_or_create_for_write(
                gallery_dir,
                &face.model,
                face.embedding.len() as u32,
            )?),
        };
        let result = stage(gallery, &mut request, &face, replace);
        staged += usize::from(result.is_ok());
        templates.push(result.is_ok().then_some(face.embedding));
        outcomes.push(Outcome {
            request,
            result,
            lookalike: None,
        });
    }
    if let Some(gallery) = &mut gallery {
        find_lookalikes(gallery, &mut outcomes, &templates)?;
    }
    let (generation, gallery_size) = match &mut gallery {
        Some(gallery) if staged > 0 => (Some(gallery.commit()?), gallery.len()),
        Some(gallery) => (None, gallery.len()),
        None => (None, Gallery::open(gallery_dir).map_or(0, |g| g.len())),
    };
    for outcome in &outcomes {
        progress(outcome);
    }
    Ok(Report {
        outcomes,
        generation,
        gallery_size,
    })
}

/// Marks each staged outcome whose template matches somebody else in the gallery (the batch
/// included) under the gate's default rule at the gallery's new size.
fn find_lookalikes(
    gallery: &mut Gallery,
    outcomes: &mut [Outcome],
    templates: &[Option<Vec<f32>>],
) -> Result<(), GalleryError> {
    let threshold = crate::standing::threshold_for(gallery.model(), gallery.len() as u64);
    for (outcome, template) in outcomes.iter_mut().zip(templates) {
        let Some(template) = template else { continue };
        outcome.lookalike = gallery
            .search(template, 2)?
            .into_iter()
            .find(|other| other.id != outcome.request.id)
            .filter(|other| f64::from(other.similarity) >= threshold)
            .map(|other| Lookalike {
                id: other.id,
                similarity: other.similarity,
                threshold,
            });
    }
    Ok(())
}

/// Stages one face under the lock `gallery` holds; a request without a label keeps the label of
/// the person it replaces (read under the lock, so it is the label being replaced).
fn stage(
    gallery: &mut Gallery,
    request: &mut Request,
    face: &PhotoFace,
    replace: bool,
) -> Result<(), Refusal> {
    let label = match &request.label {
        Some(label) => label.clone(),
        None => gallery
            .label_of(&request.id)
            .filter(|_| replace)
            .unwrap_or(&request.id)
            .to_owned(),
    };
    gallery.enroll(&request.id, &label, &face.model, &face.embedding, replace)?;
    request.label = Some(label);
    Ok(())
}

/// Requests for every image in `dir` (jpg, jpeg, png), sorted, with the file stem as id and label.
pub fn requests_from_dir(dir: &Path) -> std::io::Result<Vec<Request>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    photos.sort();
    Ok(photos
        .into_iter()
        .map(|photo| {
            let stem = photo
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Request::one_photo(stem.clone(), Some(stem), photo)
        })
        .collect())
}

#[derive(Debug, Error)]
#[error("{path}: {message}")]
pub struct CsvError {
    pub path: PathBuf,
    pub message: String,
}

/// Requests from a CSV with the header `id,label,photo`; photo paths are relative to the CSV's
/// folder. Several rows with one id are one person enrolled from all their photos; their labels
/// must agree.
pub fn requests_from_csv(path: &Path) -> Result<Vec<Request>, CsvError> {
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
        label: String,
        photo: PathBuf,
    }
    let error = |message: String| CsvError {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| error(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    // Each request with the CSV row (1-based, the header is row 1) that opened it.
    let mut requests: Vec<(usize, Request)> = Vec::new();
    for (index, row) in reader.deserialize::<Row>().enumerate() {
        let line = index + 2;
        let row =
            row.map_err(|e| error(format!("row {line}: {e} (expected columns id,label,photo)")))?;
        let photo = base.join(row.photo);
        match requests.iter_mut().find(|(_, r)| r.id == row.id) {
            Some((first, request)) => {
                if request.label.as_deref() != Some(row.label.as_str()) {
                    return Err(error(format!(
                        "row {line}: {} is labelled {:?} here and {:?} in row {first}; one person \
                         has one label",
                        row.id,
                        row.label,
                        request.label.as_deref().unwrap_or_default()
                    )));
                }
                request.photos.push(photo);
            }
            None => requests.push((line, Request::one_photo(row.id, Some(row.label), photo))),
        }
    }
    Ok(requests.into_iter().map(|(_, request)| request).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_resolve_photos_next_to_the_csv_and_bad_rows_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("people.csv");
        std::fs::write(
            &csv,
            "id,label,photo\np-1, Ada ,ada.jpg\np-2,Bob,sub/bob.png\n",
        )
        .unwrap();
        let requests = requests_from_csv(&csv).unwrap();
        assert_eq!(
            requests[0],
            Request::one_photo("p-1", Some("Ada".into()), dir.path().join("ada.jpg"))
        );
        assert_eq!(requests[1].photos, [dir.path().join("sub/bob.png")]);

        std::fs::write(&csv, "id,label,photo\np-1,Ada\n").unwrap();
        let err = requests_from_csv(&csv).unwrap_err().to_string();
        assert!(err.contains("people.csv") && err.contains("row 2"), "{err}");
    }

    #[test]
    fn csv_rows_of_one_id_are_one_person_whose_labels_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("people.csv");
        std::fs::write(
            &csv,
            "id,label,photo\np-1,Ada,a1.jpg\np-2,Bob,b.jpg\np-1,Ada,a2.jpg\n",
        )
        .unwrap();
        let requests = requests_from_csv(&csv).unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].photos,
            [dir.path().join("a1.jpg"), dir.path().join("a2.jpg")]
        );
        assert_eq!(requests[1].id, "p-2");

        std::fs::write(&csv, "id,label,photo\np-1,Ada,a1.jpg\np-1,Ada L.,a2.jpg\n").unwrap();
        let err = requests_from_csv(&csv).unwrap_err().to_string();
        assert!(
            err.contains("people.csv: row 3: p-1 is labelled \"Ada L.\" here and \"Ada\" in row 2"),
            "{err}"
        );
    }

    #[test]
    fn dir_requests_take_images_only_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.JPG", "a.png", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let ids: Vec<String> = requests_from_dir(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
