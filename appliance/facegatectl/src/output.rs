// SPDX-License-Identifier: MIT OR Apache-2.0
//! Standard output that may fail: closed by its reader (`facegatectl list | head -1`) or on a
//! full disk (`> /dev/full`). Every command writes through `Output`, so a write error is an
//! error value rather than `println!`'s panic, and a closed output can be told from a full one.

use std::io::{self, Write};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot write to standard output: {0}")]
pub struct OutputError(#[from] pub io::Error);

impl OutputError {
    /// The reader went away (EPIPE): nothing is wrong with what was done, nobody is listening.
    pub fn is_closed(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Standard output (or any writer), with every write's error kept.
pub struct Output<W: Write = io::Stdout> {
    out: W,
}

impl Output {
    pub fn stdout() -> Output {
        Output { out: io::stdout() }
    }
}

impl<W: Write> Output<W> {
    pub fn new(out: W) -> Output<W> {
        Output { out }
    }

    /// Writes `text` and a newline, and flushes, so that a line reported done is out.
    pub fn line(&mut self, text: impl std::fmt::Display) -> Result<(), OutputError> {
        writeln!(self.out, "{text}")?;
        self.out.flush()?;
        Ok(())
    }

    /// Writes `text` as it is (for text that ends its own lines), and flushes.
    pub fn text(&mut self, text: &str) -> Result<(), OutputError> {
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_is_told_from_a_full_one() {
        let closed = Output::new(Failing(io::ErrorKind::BrokenPipe))
            .line("x")
            .unwrap_err();
        assert!(closed.is_closed());
        let full = Output::new(Failing(io::ErrorKind::StorageFull))
            .line("x")
            .unwrap_err();
        assert!(!full.is_closed());
        assert!(
            full.to_string()
                .starts_with("cannot write to standard output: "),
            "{full}"
        );
    }
}
