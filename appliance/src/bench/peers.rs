//! `facegatectl bench peers` (being written).

use clap::Args;

use crate::pipeline::Models;

#[derive(Args, Debug)]
pub struct PeersArgs {}

pub fn run(
    _args: &PeersArgs,
    _models: &Models,
    _out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    anyhow::bail!("facegatectl bench peers is not written yet")
}
