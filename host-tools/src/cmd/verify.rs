//! `host-tools verify`: every CRC of a pack, as a board checks a card before trusting it.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use picogpt_core::WorkspaceSpec;

#[derive(clap::Args)]
pub struct Args {
    /// Packed model file.
    file: PathBuf,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 64 * 1024, value_parser = super::at_least_one)]
    chunk_bytes: usize,
}

pub fn main(args: Args) -> Result<()> {
    let name = args.file.display().to_string();
    let mut model = super::open_pack(&args.file)?;
    let spec = WorkspaceSpec::new(1, args.chunk_bytes);
    let mut mem = vec![0.0f32; model.workspace_bytes(&spec).div_ceil(4)];
    let mut ws = model.workspace(&spec, &mut mem).map_err(|e| anyhow!("{name}: {e}"))?;
    model.verify_all(&mut ws).map_err(|e| anyhow!("{name}: {e}"))?;
    let tensors = model.layout().tensor_count();
    let tokenizer = if model.tokenizer().is_some() { " and both tokenizer sections" } else { "" };
    println!("{name}: ok: manifest, {tensors} tensors{tokenizer} match their CRCs");
    Ok(())
}
