//! `host-tools info`.

use std::path::PathBuf;

use anyhow::Result;
use picogpt_core::{KvFormat, RamKv, WorkspaceSpec};

#[derive(clap::Args)]
pub struct Args {
    /// Packed model file.
    file: PathBuf,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 4096, value_parser = super::at_least_one)]
    chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one)]
    batch: usize,
    /// Context positions to size the KV cache for.
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
    positions: usize,
}

pub fn main(args: Args) -> Result<()> {
    let model = super::open_pack(&args.file)?;
    let cfg = model.config();
    let layout = model.layout();
    println!("model: {cfg}");
    println!("weights: {}", layout.quant().matrices);
    if !layout.quant().lm_head_outliers.is_empty() {
        println!(
            "LM-head outlier channels in f16: {:?}",
            layout.quant().lm_head_outliers.as_slice()
        );
    }
    match layout.tokenizer() {
        Some(t) => println!(
            "tokenizer: {} + {} bytes (vocabulary + BPE index of {} slots)",
            t.vocab_len,
            u64::from(t.index_slots) * 8,
            t.index_slots
        ),
        None => println!("tokenizer: none (token ids only)"),
    }
    println!(
        "file: {} bytes, {} tensors, weights end at {}",
        layout.file_len(),
        layout.tensor_count(),
        layout.weights_end()
    );
    let spec = WorkspaceSpec::new(args.batch, args.chunk_bytes);
    let working = model.workspace_bytes(&spec);
    println!(
        "working memory (batch {}, chunk {} bytes): {working} bytes",
        args.batch, args.chunk_bytes
    );
    for format in [KvFormat::F32, KvFormat::F16, KvFormat::Int8] {
        let per = RamKv::bytes_per_position(cfg, format);
        println!(
            "KV cache {format:?}: {per} bytes/position; with {} positions, total {} bytes",
            args.positions,
            working + per * args.positions
        );
    }
    Ok(())
}
