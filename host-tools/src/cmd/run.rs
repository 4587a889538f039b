//! `host-tools run`: picoGPT's command line over core.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use clap::ValueEnum;
use host_tools::cpu::KernelLevel;
use host_tools::report::StepReport;
use host_tools::run::{Prompt, RunOptions, run};
use picogpt_core::utf8::Utf8Stream;
use picogpt_core::{Activations, KvFormat, RandomSampling, Sampling};

use super::pack::QuantArg;
use super::{candidate_line, join};

#[derive(clap::Args)]
pub struct Args {
    /// The packed file and the prompt text (`run FILE "text"`); with `--model_size`, only the
    /// prompt. An empty prompt starts from <|endoftext|>.
    #[arg(num_args = 0..=2, value_name = "FILE] [PROMPT")]
    positional: Vec<OsString>,
    /// Prompt as token ids instead of text, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Tokens to generate (generation also stops at <|endoftext|>).
    #[arg(short = 'n', long, visible_alias = "n_tokens_to_generate", default_value_t = 40)]
    n_tokens_to_generate: usize,
    /// GPT-2 size whose pack to use from --models_dir: 124M, 355M, 774M or 1558M.
    #[arg(long, visible_alias = "model_size")]
    model_size: Option<ModelSize>,
    /// Where `--model_size` looks: `<models_dir>/<size>/model-<quant>.pgpt` (downloaded from
    /// the hub and packed on first use).
    #[arg(long, visible_alias = "models_dir", default_value = "models")]
    models_dir: PathBuf,
    /// Which pack `--model_size` looks for.
    #[arg(long, value_enum, default_value_t = QuantArg::Int8)]
    quant: QuantArg,
    /// Sample with this temperature instead of taking the most likely token.
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample among the k most likely tokens (at most 64).
    #[arg(long, visible_alias = "top_k")]
    top_k: Option<u32>,
    /// Sample from the smallest set of tokens whose probability reaches p.
    #[arg(long, visible_alias = "top_p")]
    top_p: Option<f32>,
    /// Seed of the sampling noise (the same seed gives the same text); printed when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Print only the generated text.
    #[arg(long, short)]
    quiet: bool,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 64 * 1024)]
    chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// KV cache element format.
    #[arg(long, value_enum, default_value_t = KvArg::F32)]
    kv: KvArg,
    /// How activations meet int8 weights: `f32` (exact), `int16` (integer kernels, the exact
    /// path's quality) or `int8` (W8A8).
    #[arg(long, default_value = "f32", value_parser = super::parse_activations)]
    activations: Activations,
    /// Skip the CRC check of the first pass.
    #[arg(long)]
    no_verify: bool,
    /// Read each next chunk on a second thread while core computes (double buffering).
    #[arg(long)]
    prefetch: bool,
    /// Read the pack chunk by chunk into core's buffer, as a board reads its card, instead
    /// of computing on a memory map of it.
    #[arg(long)]
    no_mmap: bool,
    /// Threads to split each matrix's rows between (default: every core available).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    threads: usize,
    /// Kernels to use: the best this CPU runs, or a lower level (same output).
    #[arg(long, value_enum, default_value_t = KernelLevel::Best)]
    kernels: KernelLevel,
    /// Emulate a board's RAM (e.g. 400K, 2M): workspace and KV cache must fit; KV positions
    /// beyond it spill to a file, as a board spills to its SD card.
    #[arg(long, value_parser = parse_bytes)]
    ram_budget: Option<usize>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    hub: super::download::HubArgs,
}

/// The released GPT-2 sizes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelSize {
    #[value(name = "124M")]
    M124,
    #[value(name = "355M")]
    M355,
    #[value(name = "774M")]
    M774,
    #[value(name = "1558M")]
    M1558,
}

impl ModelSize {
    /// `124M`, `355M`, …
    pub fn name(self) -> &'static str {
        match self {
            Self::M124 => "124M",
            Self::M355 => "355M",
            Self::M774 => "774M",
            Self::M1558 => "1558M",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum KvArg {
    F32,
    F16,
    Int8,
}

pub fn main(args: Args) -> Result<()> {
    let (file, prompt_text) = file_and_prompt(&args)?;
    let prompt = match (&args.tokens, prompt_text) {
        (Some(_), Some(_)) => bail!("give either a prompt text or --tokens, not both"),
        (Some(ids), None) => Prompt::Tokens(ids.clone()),
        (None, text) => Prompt::Text(text.unwrap_or_default()),
    };
    let sampling = sampling(&args)?;
    let opts = RunOptions {
        chunk_bytes: args.chunk_bytes,
        batch: args.batch,
        kv: match args.kv {
            KvArg::F32 => KvFormat::F32,
            KvArg::F16 => KvFormat::F16,
            KvArg::Int8 => KvFormat::Int8,
        },
        verify: !args.no_verify,
        prefetch: args.prefetch,
        mmap: !args.no_mmap,
        threads: args.threads,
        kernels: args.kernels,
        ram_budget: args.ram_budget,
        sampling,
        activations: args.activations,
        ..RunOptions::with_prompt(prompt, args.n_tokens_to_generate)
    };
    let mut index = 0;
    let mut stream = Utf8Stream::new();
    let mut stdout = std::io::stdout().lock();
    let report = run(&file, &opts, |step| {
        if args.quiet {
            stream.push(&step.bytes, &mut |text| {
                let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
            });
        } else {
            print_step(index, step);
        }
        index += 1;
    })?;
    if args.quiet {
        stream.finish(&mut |text| print!("{text}"));
        println!();
    } else {
        println!("generated: {}", join(&report.tokens()));
        if let Some(text) = &report.text {
            println!("{text}");
        }
        if report.steps.iter().any(|s| s.truncated) {
            println!("note: top-p's nucleus exceeded the 64 kept candidates; drawn among those");
        }
        if let (Some(budget), Some(kv)) = (args.ram_budget, report.kv) {
            println!(
                "RAM budget {budget} bytes: workspace {} bytes, KV cache {} positions in RAM, {} spilled to a file",
                report.working_bytes, kv.ram_positions, kv.spilled_positions
            );
        }
        let per_token = report.bytes_read as f64 / report.steps.len() as f64;
        println!(
            "prompt pass {:.1} ms, {:.2} ms/token after it, {:.0} bytes read/token, working memory {} bytes",
            report.prefill_ms, report.ms_per_token, per_token, report.working_bytes
        );
        if let Some(engine) = &report.engine {
            let how = if engine.mapped { "on the mapped pack" } else { "through the chunk buffer" };
            println!("kernels {}, {} threads, {how}", engine.kernels, engine.threads);
        }
    }
    if let Some(path) = args.json {
        report.write(&path).map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The pack to run and the prompt text, from the positional arguments and `--model_size`.
fn file_and_prompt(args: &Args) -> Result<(PathBuf, Option<String>)> {
    let mut positional = args.positional.iter().cloned();
    let file = match args.model_size {
        Some(size) => super::download::first_use(size, &args.models_dir, args.quant, &args.hub)?,
        None => PathBuf::from(
            positional.next().ok_or_else(|| anyhow!("give a packed file or --model_size"))?,
        ),
    };
    let prompt = positional.next().map(utf8_prompt).transpose()?;
    Ok((file, prompt))
}

/// The prompt as text, or an error naming the first byte that is not UTF-8.
fn utf8_prompt(raw: OsString) -> Result<String> {
    raw.into_string().map_err(|raw| {
        let bytes = raw.as_encoded_bytes();
        let offset = std::str::from_utf8(bytes).err().map_or(0, |e| e.valid_up_to());
        anyhow!("the prompt is not valid UTF-8 (byte {offset} of {})", bytes.len())
    })
}

/// `400K`, `2M`, `1G` or plain bytes (K = 1024).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let scale: usize = match unit {
        'B' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (use K, M or G)")),
    };
    let n: usize =
        digits.trim().parse().map_err(|_| format!("{text:?} is not a size like 400K"))?;
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))
}

/// Greedy unless a sampling option is given.
fn sampling(args: &Args) -> Result<Sampling> {
    if args.temperature.is_none()
        && args.top_k.is_none()
        && args.top_p.is_none()
        && args.seed.is_none()
    {
        return Ok(Sampling::Greedy);
    }
    let temperature = args.temperature.unwrap_or(1.0);
    if !(temperature > 0.0 && temperature.is_finite()) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    let top_p = args.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {top_p}");
    }
    let seed = args.seed.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        eprintln!("seed: {now}");
        now
    });
    Ok(Sampling::Random(RandomSampling {
        temperature,
        top_k: args.top_k.unwrap_or(0),
        top_p,
        seed,
    }))
}

fn print_step(index: usize, step: &StepReport) {
    match &step.text {
        Some(text) => println!(
            "step {}: token {} ({})",
            index + 1,
            step.token,
            picogpt_core::display::PyRepr(text)
        ),
        None => println!("step {}: token {}", index + 1, step.token),
    }
    for (rank, entry) in step.top.iter().enumerate() {
        println!("{}", candidate_line(rank + 1, entry));
    }
}
