//! `host-tools synth`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::ValueEnum;
use host_tools::checkpoint::{self, Dtype, WriteOptions};
use host_tools::guard::{self, Output};
use host_tools::synth;
use host_tools::tokenizer::{GPT2_VOCAB, Tokenizer};
use picogpt_core::ModelConfig;

#[derive(clap::Args)]
pub struct Args {
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

pub fn main(args: Args) -> Result<()> {
    let config = ModelConfig {
        n_layer: args.n_layer,
        n_embd: args.n_embd,
        n_head: args.n_head,
        n_ctx: args.n_ctx,
        vocab_size: args.vocab_size,
        layer_norm_epsilon: 1e-5,
    };
    guard::check_outputs(&[Output::folder("--out", &args.out)], &[])?;
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
        .map_err(|e| anyhow!("creating {}: {e}", args.out.display()))?;
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
