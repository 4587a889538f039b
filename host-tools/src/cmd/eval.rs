//! `host-tools eval`: perplexity, KL divergence and agreement of packs against the f32
//! reference, teacher-forced over a text.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use host_tools::checkpoint;
use host_tools::eval::{EvalOptions, EvalReport, GETTYSBURG, Reference, eval_pack};
use host_tools::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use picogpt_core::Activations;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder (config.json, model.safetensors) the packs were made from.
    model_dir: PathBuf,
    /// Packed files to compare with the checkpoint's f32 reference.
    #[arg(required = true)]
    packs: Vec<PathBuf>,
    /// Text to read (default: the Gettysburg Address shipped in data/gettysburg.txt).
    #[arg(long, conflicts_with = "tokens")]
    text: Option<PathBuf>,
    /// Token ids to read instead of a text, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 64 * 1024)]
    chunk_bytes: usize,
    /// Kernel paths to run each pack with (for int8 weights): `f32` (exact), `int16`,
    /// `int8`, or several (`f32,int16,int8`).
    #[arg(long, value_delimiter = ',', default_value = "f32", value_parser = super::parse_activations)]
    activations: Vec<Activations>,
}

pub fn main(args: Args) -> Result<()> {
    let weights = checkpoint::load(&args.model_dir)?;
    let config = weights.config;
    let (mut tokens, source) = match (&args.tokens, &args.text) {
        (Some(ids), _) => (ids.clone(), "--tokens".to_owned()),
        (None, text) => {
            let tokenizer =
                Tokenizer::for_pack(&args.model_dir, config.vocab_size)?.ok_or_else(|| {
                    anyhow!("vocabulary of {} is not GPT-2's: give --tokens", config.vocab_size)
                })?;
            let (text, source) = read_text(text.as_deref())?;
            (tokenizer.encode(&text), source)
        }
    };
    let n_ctx = config.n_ctx as usize;
    if tokens.len() > n_ctx {
        println!("{source}: {} tokens, reading the first {n_ctx} (n_ctx)", tokens.len());
        tokens.truncate(n_ctx);
    }
    if tokens.len() < 2 {
        bail!("{source}: {} tokens, evaluation needs at least 2", tokens.len());
    }
    let reference = Reference::new(&weights, &tokens)?;
    println!(
        "{source}: {} tokens; f32 reference perplexity {:.4}",
        tokens.len(),
        reference.perplexity()
    );
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} positions {wide_msg}")?;
    let mut packs = Vec::new();
    for path in &args.packs {
        for &activations in &args.activations {
            let opts = EvalOptions { chunk_bytes: args.chunk_bytes, activations };
            let bar = ProgressBar::new(tokens.len() as u64).with_style(style.clone());
            bar.set_message(path.display().to_string());
            let quality =
                eval_pack(path, &reference, &opts, |done, _| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            packs.push(quality);
        }
    }
    let report = EvalReport {
        model: config,
        tokens: tokens.len(),
        reference_perplexity: reference.perplexity(),
        packs,
    };
    print_table(&report);
    if let Some(out) = &args.json {
        report.write(out).map_err(|e| anyhow!("writing {}: {e}", out.display()))?;
    }
    Ok(())
}

/// The text and how to name it.
fn read_text(path: Option<&Path>) -> Result<(String, String)> {
    match path {
        None => Ok((GETTYSBURG.to_owned(), "data/gettysburg.txt".to_owned())),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
            Ok((text, path.display().to_string()))
        }
    }
}

fn print_table(report: &EvalReport) {
    println!(
        "{:<36} {:<20} {:<11} {:>13} {:>11} {:>9} {:>10} {:>10} {:>7} {:>7} {:>10}",
        "pack",
        "format",
        "activations",
        "bytes",
        "perplexity",
        "vs f32",
        "mean KL",
        "max KL",
        "top-1",
        "top-3",
        "max |err|"
    );
    for q in &report.packs {
        println!(
            "{:<36} {:<20} {:<11} {:>13} {:>11.4} {:>9.5} {:>10.3e} {:>10.3e} {:>6.1}% {:>6.1}% {:>10.4}",
            q.path,
            q.format,
            q.activations,
            q.file_bytes,
            q.perplexity,
            q.perplexity_ratio,
            q.mean_kl,
            q.max_kl,
            100.0 * q.top1_agreement,
            100.0 * q.top3_agreement,
            q.max_abs_logit_error
        );
    }
}
