// SPDX-License-Identifier: MIT OR Apache-2.0
//! Writes the `gallery_open` target's seed inputs (the files of real generations, see
//! `Bases::seeds`) into the directory given as the only argument.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gallery_open_seeds DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    let bases = facegate_vision_fuzz::Bases::new();
    for (name, input) in bases.seeds() {
        std::fs::write(dir.join(name), input)?;
    }
    Ok(())
}
