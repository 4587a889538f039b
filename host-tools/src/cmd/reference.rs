//! `host-tools reference`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use host_tools::guard::{self, Output};
use host_tools::report::{RunReport, StepReport, TopEntry};
use host_tools::tokenizer::Tokenizer;
use host_tools::{checkpoint, reference};

use super::{Generation, candidate_line, join};

#[derive(clap::Args)]
pub struct Args {
    /// Folder with config.json and model.safetensors.
    model_dir: PathBuf,
    /// The prompt text, encoded with the folder's tokenizer (or GPT-2's); an empty prompt
    /// starts from <|endoftext|>.
    #[arg(conflicts_with = "tokens")]
    prompt: Option<String>,
    #[command(flatten)]
    generation: Generation,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn main(args: Args) -> Result<()> {
    guard::checkpoint_folder(&args.model_dir)?;
    if let Some(json) = &args.json {
        let out =
            Output::file("--json", json).instead(guard::did_you_mean("--json reference.json"));
        guard::check_outputs(&[out], &guard::checkpoint_files(&args.model_dir))?;
    }
    let weights = checkpoint::load(&args.model_dir)?;
    let tokenizer = Tokenizer::for_pack(&args.model_dir, weights.config.vocab_size)?;
    let prompt = match (&args.generation.tokens, &args.prompt, &tokenizer) {
        (Some(ids), _, _) => ids.0.clone(),
        (None, Some(text), Some(t)) if !text.is_empty() => t.encode(text),
        (None, _, Some(t)) => vec![t.end_of_text()],
        (None, _, None) => bail!(
            "{}: the vocabulary of {} is not GPT-2's and the folder has no vocab.json and \
             merges.txt: give the prompt as --tokens",
            args.model_dir.display(),
            weights.config.vocab_size
        ),
    };
    let text = |id: u32| -> Option<String> {
        tokenizer.as_ref().map(|t| String::from_utf8_lossy(t.token(id)).into_owned())
    };
    let started = Instant::now();
    let generation = reference::greedy(&weights, &prompt, args.generation.n_tokens_to_generate)?;
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
        prompt,
        steps,
        text,
        first_logits: Some(generation.first_logits),
        bytes_read: 0,
        working_bytes: 0,
        prefill_ms: 0.0,
        ms_per_token: elapsed_ms / args.generation.n_tokens_to_generate as f64,
        kv: None,
        passes: None,
        engine: None,
    };
    if let Some(path) = args.json {
        report.write(&path).map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
