//! `host-tools`: synthesize, pack, reference and run GPT-2 on the desktop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use host_tools::checkpoint::{self, Dtype, WriteOptions};
use host_tools::file_storage::FileStorage;
use host_tools::pack::{PackOptions, PackSummary, pack};
use host_tools::report::{RunReport, StepReport, TopEntry};
use host_tools::run::{RunOptions, run};
use host_tools::tokenizer::{GPT2_VOCAB, Tokenizer};
use host_tools::{reference, synth};
use indicatif::{ProgressBar, ProgressStyle};
use picogpt_core::display::write_candidate;
use picogpt_core::{Candidate, KvFormat, MatrixFormat, Model, ModelConfig, RamKv, WorkspaceSpec};

#[derive(Parser)]
#[command(name = "host-tools", version, about = "GPT-2 for microcontrollers: the desktop side")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic GPT-2 checkpoint (config.json + model.safetensors), deterministic
    /// from the seed, in the Hugging Face layout. Default shape: GPT-2 124M.
    Synth(SynthArgs),
    /// Quantize a Hugging Face GPT-2 checkpoint folder into one packed file.
    Pack(PackArgs),
    /// Greedy-decode with the independent plain-f32 reference implementation.
    Reference(ReferenceArgs),
    /// Greedy-decode with core over a packed file, read chunk by chunk as a board would.
    Run(RunArgs),
    /// Describe a packed file and the memory core needs to run it.
    Info(InfoArgs),
}

#[derive(clap::Args)]
struct InfoArgs {
    /// Packed model file.
    file: PathBuf,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 4096)]
    chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Context positions to size the KV cache for.
    #[arg(long, default_value_t = 64)]
    positions: usize,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed: the same seed gives bit-identical weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 12)]
    n_layer: u32,
    #[arg(long, default_value_t = 768)]
    n_embd: u32,
    #[arg(long, default_value_t = 12)]
    n_head: u32,
    #[arg(long, default_value_t = 1024)]
    n_ctx: u32,
    #[arg(long, default_value_t = 50257)]
    vocab_size: u32,
    /// Element type of the safetensors file.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Prefix tensor names with `transformer.` as GPT2LMHeadModel saves them.
    #[arg(long)]
    transformer_prefix: bool,
    /// Leave out the `h.{i}.attn.bias` causal-mask buffers the hub file carries.
    #[arg(long)]
    no_masks: bool,
    /// Also write a tied `lm_head.weight`.
    #[arg(long)]
    lm_head: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum QuantArg {
    Int8,
    F16,
    F32,
}

#[derive(clap::Args)]
struct PackArgs {
    /// Folder with config.json and model.safetensors.
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

#[derive(clap::Args)]
struct ReferenceArgs {
    /// Folder with config.json and model.safetensors.
    model_dir: PathBuf,
    /// Prompt token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 8)]
    n: usize,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum KvArg {
    F32,
    F16,
    Int8,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Packed model file.
    file: PathBuf,
    /// Prompt token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 8)]
    n: usize,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 64 * 1024)]
    chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// KV cache element format.
    #[arg(long, value_enum, default_value_t = KvArg::F32)]
    kv: KvArg,
    /// Skip the CRC check of the first pass.
    #[arg(long)]
    no_verify: bool,
    /// Print only the generated token ids.
    #[arg(long)]
    quiet: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Synth(args) => synth_cmd(args),
        Command::Pack(args) => pack_cmd(args),
        Command::Reference(args) => reference_cmd(args),
        Command::Run(args) => run_cmd(args),
        Command::Info(args) => info_cmd(args),
    }
}

fn synth_cmd(args: SynthArgs) -> Result<()> {
    let config = ModelConfig {
        n_layer: args.n_layer,
        n_embd: args.n_embd,
        n_head: args.n_head,
        n_ctx: args.n_ctx,
        vocab_size: args.vocab_size,
        layer_norm_epsilon: 1e-5,
    };
    let started = Instant::now();
    let weights = synth::synthesize(config, args.seed)?;
    let opts = WriteOptions {
        dtype: match args.dtype {
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::F16 => Dtype::F16,
            DtypeArg::Bf16 => Dtype::BF16,
        },
        transformer_prefix: args.transformer_prefix,
        attn_bias_buffers: !args.no_masks,
        lm_head: args.lm_head,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    checkpoint::write(&args.out, &weights, &opts)?;
    if config.vocab_size == GPT2_VOCAB {
        // As in the hub's folders: GPT-2's real vocabulary beside the (synthetic) weights.
        Tokenizer::gpt2()?.write_hf_files(&args.out)?;
    }
    println!(
        "wrote synthetic GPT-2 ({} layers, n_embd {}, {} heads, n_ctx {}, vocab {}, seed {}) to {} in {:.1} s",
        config.n_layer,
        config.n_embd,
        config.n_head,
        config.n_ctx,
        config.vocab_size,
        args.seed,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn pack_cmd(args: PackArgs) -> Result<()> {
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
        "{:<28} {:>14} {:>7.1}%   (file, with manifest and alignment)",
        "total",
        s.file_bytes,
        100.0 * s.file_bytes as f64 / s.f32_bytes() as f64
    );
}

fn reference_cmd(args: ReferenceArgs) -> Result<()> {
    let weights = checkpoint::load(&args.model_dir)?;
    let started = Instant::now();
    let generation = reference::greedy(&weights, &args.tokens, args.n)?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let steps: Vec<StepReport> = generation
        .steps
        .iter()
        .map(|s| StepReport {
            token: s.token,
            top: s
                .top3
                .iter()
                .map(|c| TopEntry { id: c.token, logit: c.logit, prob: c.prob })
                .collect(),
        })
        .collect();
    for (i, step) in steps.iter().enumerate() {
        print_step(i, step);
    }
    let report = RunReport {
        model: weights.config,
        quant: "f32".into(),
        prompt: args.tokens.clone(),
        steps,
        first_logits: Some(generation.first_logits),
        bytes_read: 0,
        working_bytes: 0,
        prefill_ms: 0.0,
        ms_per_token: elapsed_ms / args.n.max(1) as f64,
    };
    println!("generated: {}", join(&report.tokens()));
    if let Some(path) = args.json {
        report.write(&path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_cmd(args: RunArgs) -> Result<()> {
    if args.tokens.is_empty() {
        bail!("--tokens needs at least one token id");
    }
    let opts = RunOptions {
        chunk_bytes: args.chunk_bytes,
        batch: args.batch,
        kv: match args.kv {
            KvArg::F32 => KvFormat::F32,
            KvArg::F16 => KvFormat::F16,
            KvArg::Int8 => KvFormat::Int8,
        },
        verify: !args.no_verify,
        ..RunOptions::new(args.tokens.clone(), args.n)
    };
    let mut index = 0;
    let report = run(&args.file, &opts, |step| {
        if !args.quiet {
            print_step(index, step);
        }
        index += 1;
    })?;
    println!("generated: {}", join(&report.tokens()));
    if !args.quiet {
        let per_token = report.bytes_read as f64 / report.steps.len() as f64;
        println!(
            "prompt pass {:.1} ms, {:.2} ms/token after it, {:.0} bytes read/token, working memory {} bytes",
            report.prefill_ms, report.ms_per_token, per_token, report.working_bytes
        );
    }
    if let Some(path) = args.json {
        report.write(&path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn info_cmd(args: InfoArgs) -> Result<()> {
    let storage = FileStorage::open(&args.file).with_context(|| args.file.display().to_string())?;
    let model =
        Model::open(storage).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let cfg = model.config();
    let layout = model.layout();
    println!(
        "model: {} layers, n_embd {}, {} heads, n_ctx {}, vocab {}",
        cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_ctx, cfg.vocab_size
    );
    println!("weights: {}", layout.quant().matrices);
    if !layout.quant().lm_head_outliers.is_empty() {
        println!(
            "LM-head outlier channels in f16: {:?}",
            layout.quant().lm_head_outliers.as_slice()
        );
    }
    println!("file: {} bytes, {} tensors", layout.file_len(), layout.tensor_count());
    let spec = WorkspaceSpec { batch: args.batch, chunk_bytes: args.chunk_bytes };
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

fn print_step(index: usize, step: &StepReport) {
    println!("step {}: token {}", index + 1, step.token);
    for (rank, entry) in step.top.iter().enumerate() {
        let candidate = Candidate { token: entry.id, logit: entry.logit, prob: entry.prob as f32 };
        let mut line = String::new();
        // Writing to a String cannot fail.
        let _ = write_candidate(&mut line, rank + 1, &candidate, None);
        println!("{line}");
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
