//! `facegatectl bench latency` (being written).

use clap::Args;

use crate::pipeline::Models;

#[derive(Args, Debug)]
pub struct LatencyArgs {}

pub fn run(
    _args: &LatencyArgs,
    _models: &Models,
    _out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    anyhow::bail!("facegatectl bench latency is not written yet")
}
