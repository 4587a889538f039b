//! `host-tools reference`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use host_tools::report::{RunReport, StepReport, TopEntry};
use host_tools::tokenizer::Tokenizer;
use host_tools::{checkpoint, reference};

use super::{candidate_line, join};

#[derive(clap::Args)]
pub struct Args {
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

pub fn main(args: Args) -> Result<()> {
    let weights = checkpoint::load(&args.model_dir)?;
    let tokenizer = Tokenizer::for_pack(&args.model_dir, weights.config.vocab_size)?;
    let text = |id: u32| -> Option<String> {
        tokenizer.as_ref().map(|t| String::from_utf8_lossy(t.token(id)).into_owned())
    };
    let started = Instant::now();
    let generation = reference::greedy(&weights, &args.tokens, args.n)?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let steps: Vec<StepReport> = generation
        .steps
        .iter()
        .map(|s| StepReport {
            token: s.token,
            text: text(s.token),
            bytes: tokenizer.as_ref().map(|t| t.token(s.token).to_vec()).unwrap_or_default(),
            top: s
                .top3
                .iter()
                .map(|c| TopEntry {
                    id: c.token,
                    logit: c.logit,
                    prob: c.prob,
                    text: text(c.token),
                })
                .collect(),
            truncated: false,
        })
        .collect();
    for (i, step) in steps.iter().enumerate() {
        println!("step {}: token {}", i + 1, step.token);
        for (rank, entry) in step.top.iter().enumerate() {
            println!("{}", candidate_line(rank + 1, entry));
        }
    }
    let generated: Vec<u32> = steps.iter().map(|s| s.token).collect();
    let text =
        tokenizer.as_ref().map(|t| String::from_utf8_lossy(&t.decode(&generated)).into_owned());
    println!("generated: {}", join(&generated));
    if let Some(text) = &text {
        println!("text: {text:?}");
    }
    let report = RunReport {
        model: weights.config,
        quant: "f32".into(),
        prompt: args.tokens.clone(),
        steps,
        text,
        first_logits: Some(generation.first_logits),
        bytes_read: 0,
        working_bytes: 0,
        prefill_ms: 0.0,
        ms_per_token: elapsed_ms / args.n.max(1) as f64,
        kv: None,
        engine: None,
    };
    if let Some(path) = args.json {
        report.write(&path).map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
