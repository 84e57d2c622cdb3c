//! `facegatectl bench`: per-stage and end-to-end timings on real models and frames.

use std::io::Write;

use clap::Args;

use crate::pipeline::Models;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Iterations per measured stage
    #[arg(long, default_value_t = 100)]
    pub iterations: usize,
}

pub fn run(_args: &BenchArgs, _models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "bench: not yet")?;
    Ok(())
}
