//! `host-tools eval`: perplexity, KL divergence and agreement of packs against the f32
//! reference, teacher-forced over a text.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use host_tools::calibrate::{CALIBRATION_NAME, CALIBRATION_TEXT};
use host_tools::checkpoint;
use host_tools::eval::{EvalOptions, EvalReport, PackQuality, Reference, eval_pack, open_pack};
use host_tools::guard::{self, Output};
use host_tools::learned::{KJV_4X128_DIR, KJV_PASSAGE, KJV_PASSAGE_NAME};
use host_tools::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use picogpt_core::Activations;

use super::TokenIds;
use super::pack::{INT8_BLOCK, QuantArg, pack_folder};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder (config.json, model.safetensors) the packs were made from (default:
    /// the learned 4 × 128 model shipped in weights/kjv-4x128).
    model_dir: Option<PathBuf>,
    /// Packed files to compare with the checkpoint's f32 reference (default: the checkpoint
    /// packed f32, f16, int8 and int4 into a temporary folder, the int8 and int4 packs read
    /// on every activation path).
    packs: Vec<PathBuf>,
    /// Text to read (default: the held-out passage of the learned models' corpus,
    /// data/kjv-ruth-1.txt; data/gettysburg.txt is another).
    #[arg(long, conflicts_with = "tokens")]
    text: Option<PathBuf>,
    /// Token ids to read instead of a text, comma-separated.
    #[arg(long, value_parser = super::token_ids)]
    tokens: Option<TokenIds>,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 64 * 1024, value_parser = super::at_least_one)]
    chunk_bytes: usize,
    /// Kernel paths to read int8 and int4 weights with: `f32` (exact), `int16`, `int8`, or
    /// several (`f32,int16,int8`). Default: `f32` for the packs given, all three for the packs
    /// made here. f32 and f16 weights are read once, on the exact path.
    #[arg(long, value_delimiter = ',', value_parser = super::parse_activations)]
    activations: Option<Vec<Activations>>,
}

/// The packs `eval` makes when none are given.
const DEFAULT_FORMATS: [QuantArg; 5] =
    [QuantArg::F32, QuantArg::F16, QuantArg::Int8, QuantArg::Int4, QuantArg::Compact];

/// Every activation path, what the packs made here are read with by default.
const ALL_PATHS: [Activations; 3] = [Activations::F32, Activations::Int16, Activations::Int8];

pub fn main(args: Args) -> Result<()> {
    let model_dir = args.model_dir.clone().unwrap_or_else(|| {
        let shipped = PathBuf::from(KJV_4X128_DIR);
        shipped.canonicalize().unwrap_or(shipped)
    });
    guard::checkpoint_folder(&model_dir)?;
    if let Some(json) = &args.json {
        let mut inputs = guard::checkpoint_files(&model_dir);
        inputs.extend(args.packs.iter().cloned());
        inputs.extend(args.text.iter().cloned());
        let out = Output::file("--json", json).instead(guard::did_you_mean("--json eval.json"));
        guard::check_outputs(&[out], &inputs)?;
    }
    let weights = checkpoint::load(&model_dir)?;
    let config = weights.config;
    // Every pack is checked before the reference's pass, which takes minutes on 124M.
    for pack in &args.packs {
        guard::pack_file(pack)?;
        open_pack(pack, &config)?;
    }
    let (mut tokens, source) = match (&args.tokens, &args.text) {
        (Some(ids), _) => (ids.0.clone(), "--tokens".to_owned()),
        (None, text) => {
            let tokenizer =
                Tokenizer::for_pack(&model_dir, config.vocab_size)?.ok_or_else(|| {
                    anyhow!("vocabulary of {} is not GPT-2's: give --tokens", config.vocab_size)
                })?;
            let (text, source) = read_text(text.as_deref())?;
            if text.trim() == CALIBRATION_TEXT.trim() {
                bail!(
                    "{source} is the calibration text the q4m-q6m packs are fitted to \
                     ({CALIBRATION_NAME}): evaluate on another text"
                );
            }
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
        "{}: {source}: {} tokens; f32 reference perplexity {:.4}",
        model_dir.display(),
        tokens.len(),
        reference.perplexity()
    );
    // Packs made here live in a temporary folder that is removed at the end.
    let scratch = tempfile::Builder::new().prefix("eval-").tempdir()?;
    let (packs, default_paths) = if args.packs.is_empty() {
        (default_packs(&model_dir, scratch.path())?, &ALL_PATHS[..])
    } else {
        (args.packs.clone(), &ALL_PATHS[..1])
    };
    let paths = args.activations.as_deref().unwrap_or(default_paths);
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} positions {wide_msg}")?;
    let mut qualities = Vec::new();
    for path in &packs {
        let (model, _) = open_pack(path, &config)?;
        let integer = model.layout().quant().has_integer_matrices();
        for &activations in if integer { paths } else { &ALL_PATHS[..1] } {
            let opts = EvalOptions { chunk_bytes: args.chunk_bytes, activations };
            let bar = ProgressBar::new(tokens.len() as u64).with_style(style.clone());
            bar.set_message(path.display().to_string());
            let mut quality =
                eval_pack(path, &reference, &opts, |done, _| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            if path.starts_with(scratch.path()) {
                quality.path = format!("(made here) {}", file_name(path));
            }
            qualities.push(quality);
        }
    }
    let report = EvalReport {
        model: config,
        tokens: tokens.len(),
        reference_perplexity: reference.perplexity(),
        packs: qualities,
    };
    print_table(&report.packs);
    if let Some(out) = &args.json {
        report.write(out).map_err(|e| anyhow!("writing {}: {e}", out.display()))?;
    }
    Ok(())
}

/// Packs `model_dir` in [`DEFAULT_FORMATS`] into `dir`.
fn default_packs(model_dir: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut packs = Vec::new();
    for quant in DEFAULT_FORMATS {
        let out = dir.join(format!("model-{}.pgpt", quant.name()));
        println!("packing {} as {}", model_dir.display(), quant.name());
        pack_folder(model_dir, &out, &quant.options(INT8_BLOCK), true)?;
        packs.push(out);
    }
    Ok(packs)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into())
}

/// The text and how to name it.
fn read_text(path: Option<&Path>) -> Result<(String, String)> {
    match path {
        None => Ok((KJV_PASSAGE.to_owned(), KJV_PASSAGE_NAME.to_owned())),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
            Ok((text, path.display().to_string()))
        }
    }
}

fn print_table(packs: &[PackQuality]) {
    let format_width = packs.iter().map(|q| q.format.len()).max().unwrap_or(0).max(6);
    let path_width = packs.iter().map(|q| q.path.len()).max().unwrap_or(0).max(4);
    println!(
        "{:<path_width$} {:<format_width$} {:<11} {:>13} {:>11} {:>9} {:>10} {:>10} {:>7} {:>7} {:>10}",
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
    for q in packs {
        println!(
            "{:<path_width$} {:<format_width$} {:<11} {:>13} {:>11.4} {:>9.5} {:>10.3e} {:>10.3e} \
             {:>6.1}% {:>6.1}% {:>10.4}",
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
