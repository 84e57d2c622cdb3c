//! Drawing boxes, points and text into raw frames (owned by the overlay work).
