//! `facegatectl bench gallery` (being written).

use clap::Args;

use crate::pipeline::Models;

#[derive(Args, Debug)]
pub struct GalleryArgs {}

pub fn run(
    _args: &GalleryArgs,
    _models: &Models,
    _out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    anyhow::bail!("facegatectl bench gallery is not written yet")
}
