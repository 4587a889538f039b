//! `host-tools pack`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;
use host_tools::checkpoint;
use host_tools::pack::{PackOptions, PackSummary, pack};
use host_tools::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use picogpt_core::MatrixFormat;

#[derive(clap::Args)]
pub struct Args {
    /// Folder with config.json and model.safetensors (and optionally vocab.json + merges.txt).
    model_dir: PathBuf,
    /// Output file.
    #[arg(short, long)]
    out: PathBuf,
    /// Weight format.
    #[arg(long, value_enum, default_value_t = QuantArg::Int8)]
    quant: QuantArg,
    /// int8 block size along the input dimension (a multiple of 32 dividing n_embd; 0 = one
    /// scale per row).
    #[arg(long, default_value_t = 32)]
    block: u32,
    /// Quantize the LM head's outlier input channels like the rest (for comparison only).
    #[arg(long)]
    no_outliers: bool,
    /// Leave the tokenizer sections out (the pack then runs with token ids only).
    #[arg(long)]
    no_tokenizer: bool,
}

/// Weight formats `pack` offers.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantArg {
    Int8,
    F16,
    F32,
}

pub fn main(args: Args) -> Result<()> {
    let weights = checkpoint::load(&args.model_dir)?;
    let matrices = match args.quant {
        QuantArg::F32 => MatrixFormat::F32,
        QuantArg::F16 => MatrixFormat::F16,
        QuantArg::Int8 => MatrixFormat::Int8 { block: args.block },
    };
    let opts = PackOptions { matrices, lm_head_outliers: !args.no_outliers };
    let tokenizer = if args.no_tokenizer {
        None
    } else {
        Tokenizer::for_pack(&args.model_dir, weights.config.vocab_size)?
    };
    if tokenizer.is_none() {
        println!("no tokenizer in the pack: it runs with token ids only");
    }
    let bar = ProgressBar::new(0)
        .with_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {wide_msg}")?);
    let summary = pack(&weights, tokenizer.as_ref(), &opts, &args.out, |done, total, tensor| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(tensor.to_string());
    })?;
    bar.finish_and_clear();
    print_summary(&args.out, &summary);
    Ok(())
}

fn print_summary(out: &Path, s: &PackSummary) {
    println!("packed {} as {}", out.display(), s.quant.matrices);
    if !s.quant.lm_head_outliers.is_empty() {
        println!("LM-head outlier channels kept in f16: {:?}", s.quant.lm_head_outliers.as_slice());
    }
    println!(
        "{:<28} {:>14} {:>8} {:>12} {:>10}",
        "tensors", "bytes", "vs f32", "max |err|", "rel RMS"
    );
    for k in &s.kinds {
        println!(
            "{:<28} {:>14} {:>7.1}% {:>12.3e} {:>10.2e}",
            k.name,
            k.bytes,
            100.0 * k.bytes as f64 / k.f32_bytes as f64,
            k.max_abs_error,
            k.rel_rms_error
        );
    }
    println!(
        "{:<28} {:>14} {:>7.1}%   (file, with manifest, tokenizer and alignment)",
        "total",
        s.file_bytes,
        100.0 * s.file_bytes as f64 / s.f32_bytes() as f64
    );
}
