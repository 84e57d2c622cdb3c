// SPDX-License-Identifier: MIT OR Apache-2.0
//! What fgoverlay draws for each face, read from the buffer's face metadata.

use std::fmt::Write;

use facegate_meta::{LANDMARKS, PixelRect};

/// Starts a run whose direction is worked out from its own letters, so that a right-to-left
/// name neither flips the similarity after it nor takes the caption's left-to-right order.
const FIRST_STRONG_ISOLATE: char = '\u{2068}';
/// Ends the run [`FIRST_STRONG_ISOLATE`] started.
const POP_DIRECTIONAL_ISOLATE: char = '\u{2069}';

/// One face as drawn.
#[derive(Debug, Default)]
pub struct Mark {
    pub bbox: PixelRect,
    pub landmarks: Option<[[f32; 2]; LANDMARKS]>,
    pub matched: bool,
    /// Kept across frames: cleared and rewritten, so that captions stop allocating once warm.
    pub caption: String,
}

/// Which parts of a mark to read.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    pub landmarks: bool,
    pub captions: bool,
}

/// The faces of the current frame, in scratch space reused from frame to frame.
#[derive(Debug, Default)]
pub struct Marks {
    marks: Vec<Mark>,
    /// Only the first `count` of `marks` are live.
    count: usize,
}

impl Marks {
    pub fn with_capacity(capacity: usize) -> Self {
        Marks {
            marks: Vec::with_capacity(capacity),
            count: 0,
        }
    }

    pub fn live(&self) -> &[Mark] {
        &self.marks[..self.count]
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Reads the face regions on `buffer`.
    ///
    /// Reads the params borrowed, straight from the ROI metas by the contract's names: the owned
    /// records of `facegate_meta::FaceRef::detection`/`matched` would allocate on every frame.
    /// A param that is missing or malformed is left out; the box is drawn all the same.
    pub fn read(&mut self, buffer: &gst::BufferRef, parts: Parts) {
        self.count = 0;
        for face in facegate_meta::faces(buffer) {
            if self.count == self.marks.len() {
                self.marks.push(Mark::default());
            }
            let mark = &mut self.marks[self.count];
            self.count += 1;
            mark.bbox = face.bbox();
            mark.landmarks = if parts.landmarks {
                face.landmarks().ok().flatten()
            } else {
                None
            };
            let matched = face.match_ref().ok().flatten();
            mark.matched = matched.is_some();
            mark.caption.clear();
            if !parts.captions {
                continue;
            }
            let track = face.track().ok().flatten().map(|t| t.id);
            let score = face.score().ok().flatten();
            let _ = match (matched, track, score) {
                (Some(m), _, _) => {
                    let name = if m.label.is_empty() { m.id } else { m.label };
                    write!(
                        mark.caption,
                        "{FIRST_STRONG_ISOLATE}{name}{POP_DIRECTIONAL_ISOLATE} {:.2}",
                        m.similarity
                    )
                }
                (None, Some(id), _) => write!(mark.caption, "#{id}"),
                (None, None, Some(score)) => write!(mark.caption, "face {score:.2}"),
                (None, None, None) => write!(mark.caption, "face"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANDMARKS_AT: [[f32; 2]; LANDMARKS] =
        [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]];

    const ALL: Parts = Parts {
        landmarks: true,
        captions: true,
    };

    /// A buffer with four faces: matched and tracked, tracked, detected only, and matched with an empty label.
    fn buffer() -> gst::Buffer {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().unwrap();
        for x in [0, 10, 20, 30] {
            facegate_meta::add_face(buf, (x, 0, 8, 8), 0.934, &LANDMARKS_AT, "yunet@test");
        }
        gst_video::VideoRegionOfInterestMeta::add(buf, "car", (0, 0, 4, 4));
        let mut index = 0;
        facegate_meta::for_each_face_mut(buf, |face| {
            if index < 2 {
                face.set_track(facegate_meta::Track {
                    id: 7 + index,
                    age: 1,
                });
            }
            if index == 0 || index == 3 {
                let label = if index == 0 {
                    "Анна Каренина"
                } else {
                    ""
                };
                face.set_match(&facegate_meta::Match {
                    id: "p-001".into(),
                    label: label.into(),
                    similarity: 0.7149,
                    generation: 1,
                });
            }
            index += 1;
        });
        buffer
    }

    #[test]
    fn captions_name_the_match_else_the_track_else_the_score() {
        let buffer = buffer();
        let mut marks = Marks::default();
        marks.read(&buffer, ALL);
        let live = marks.live();
        let captions: Vec<&str> = live.iter().map(|m| m.caption.as_str()).collect();
        assert_eq!(
            captions,
            [
                "\u{2068}Анна Каренина\u{2069} 0.71",
                "#8",
                "face 0.93",
                "\u{2068}p-001\u{2069} 0.71"
            ]
        );
        let matched: Vec<bool> = live.iter().map(|m| m.matched).collect();
        assert_eq!(matched, [true, false, false, true]);
        assert_eq!(live[1].bbox, (10, 0, 8, 8));
        assert_eq!(live[2].landmarks, Some(LANDMARKS_AT));
    }

    #[test]
    fn parts_leave_out_captions_and_landmarks() {
        let buffer = buffer();
        let mut marks = Marks::default();
        let parts = Parts {
            landmarks: false,
            captions: false,
        };
        marks.read(&buffer, parts);
        assert_eq!(marks.live().len(), 4);
        assert!(
            marks
                .live()
                .iter()
                .all(|m| m.caption.is_empty() && m.landmarks.is_none())
        );
        // Still green for the matched face.
        assert!(marks.live()[0].matched);
    }

    #[test]
    fn scratch_is_reused_across_frames() {
        let buffer = buffer();
        let mut marks = Marks::default();
        marks.read(&buffer, ALL);
        let before: Vec<(*const u8, usize)> = marks
            .marks
            .iter()
            .map(|m| (m.caption.as_ptr(), m.caption.capacity()))
            .collect();
        let marks_ptr = marks.marks.as_ptr();
        for _ in 0..3 {
            marks.read(&buffer, ALL);
        }
        let after: Vec<(*const u8, usize)> = marks
            .marks
            .iter()
            .map(|m| (m.caption.as_ptr(), m.caption.capacity()))
            .collect();
        assert_eq!(before, after);
        assert_eq!(marks_ptr, marks.marks.as_ptr());
        // Fewer faces on a later frame: the extra marks are kept, not dropped.
        marks.read(&gst::Buffer::new(), ALL);
        assert!(marks.is_empty());
        assert_eq!(marks.marks.len(), 4);
    }
}
