//! `host-tools run`: picoGPT's command line over core.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use clap::ValueEnum;
use host_tools::cpu::KernelLevel;
use host_tools::guard::{self, Output};
use host_tools::report::StepReport;
use host_tools::run::{Prompt, RunOptions, run};
use picogpt_core::sample::CANDIDATES;
use picogpt_core::utf8::Utf8Stream;
use picogpt_core::{Activations, KvFormat, RandomSampling, Sampling};

use super::pack::QuantArg;
use super::{Generation, candidate_line, join};

#[derive(clap::Args)]
pub struct Args {
    /// The packed file and the prompt text (`run FILE "text"`); with `--model_size`, only the
    /// prompt. An empty prompt starts from <|endoftext|>.
    #[arg(num_args = 0..=2, value_name = "FILE] [PROMPT")]
    positional: Vec<OsString>,
    #[command(flatten)]
    generation: Generation,
    /// GPT-2 size whose pack to use from --models_dir: 124M, 355M, 774M or 1558M.
    #[arg(long, visible_alias = "model_size", ignore_case = true)]
    model_size: Option<ModelSize>,
    /// Where `--model_size` looks: `<models_dir>/<size>/model-<quant>.pgpt` (downloaded from
    /// the hub and packed on first use).
    #[arg(long, visible_alias = "models_dir", default_value = "models")]
    models_dir: PathBuf,
    /// Which pack `--model_size` looks for.
    #[arg(long, value_enum, default_value_t = QuantArg::Int8)]
    quant: QuantArg,
    /// Sample with this temperature instead of taking the most likely token.
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sample among the k most likely tokens (1 to 64).
    #[arg(long, visible_alias = "top_k", allow_negative_numbers = true, value_parser = top_k)]
    top_k: Option<u32>,
    /// Sample from the smallest set of tokens whose probability reaches p.
    #[arg(long, visible_alias = "top_p", allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Seed of the sampling noise (the same seed gives the same text); printed when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Print only the generated text.
    #[arg(long, short)]
    quiet: bool,
    /// Bytes per storage read.
    #[arg(long, default_value_t = 64 * 1024, value_parser = super::at_least_one)]
    chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
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
    /// Draft up to K tokens per pass from earlier text of the context (prompt lookup) and
    /// verify them in the same pass (at most 32; 0 turns it off). The output is the same
    /// either way; only the passes over the weights change.
    #[arg(long, value_name = "K", default_value_t = host_tools::run::DEFAULT_SPECULATE,
          value_parser = draft_length)]
    speculate: usize,
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
    let (source, prompt_text) = source_and_prompt(&args)?;
    let prompt = match (&args.generation.tokens, prompt_text) {
        (Some(_), Some(_)) => bail!("give either a prompt text or --tokens, not both"),
        (Some(ids), None) => Prompt::Tokens(ids.0.clone()),
        (None, text) => Prompt::Text(text.unwrap_or_default()),
    };
    let sampling = sampling(&args)?;
    if let Some(json) = &args.json {
        let inputs = match &source {
            Source::Pack(path) => vec![path.clone()],
            Source::Size(size) => {
                let mut files = guard::checkpoint_files(&args.models_dir.join(size.name()));
                files.push(super::download::pack_path(*size, &args.models_dir, args.quant));
                files
            }
        };
        let out = Output::file("--json", json).instead(guard::did_you_mean("--json run.json"));
        guard::check_outputs(&[out], &inputs)?;
    }
    let file = match source {
        Source::Pack(path) => path,
        Source::Size(size) => {
            let pack = super::download::first_use(size, &args.models_dir, args.quant, &args.hub)?;
            guard::pack_file(&pack)?;
            pack
        }
    };
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
        speculate: args.speculate,
        sampling,
        activations: args.activations,
        ..RunOptions::with_prompt(prompt, args.generation.n_tokens_to_generate)
    };
    let mut index = 0;
    let mut stream = Utf8Stream::new();
    let report = run(&file, &opts, |step| {
        if args.quiet {
            stream.push(&step.bytes, &mut |text| {
                print!("{text}");
                crate::stdout::flush();
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
        if let Some(p) = report.passes.filter(|p| p.drafts > 0) {
            let mut line = String::new();
            p.write_summary(&mut line, report.steps.len())?;
            println!("{line}");
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

/// What `run` runs: a pack file, or GPT-2 of a size from `--models_dir`.
enum Source {
    Pack(PathBuf),
    Size(ModelSize),
}

/// What to run and the prompt text, from the positional arguments and `--model_size`; the
/// usual mix-ups (picoGPT's `run "prompt"` without a size, a pack together with a size) get
/// the command that was meant.
fn source_and_prompt(args: &Args) -> Result<(Source, Option<String>)> {
    let word = |raw: &OsString| super::shell_word(&raw.to_string_lossy());
    let (source, prompt) = match (args.model_size, args.positional.as_slice()) {
        (Some(size), [file, prompt]) => bail!(
            "with --model_size the only argument is the prompt, but two were given: did you mean \
             `host-tools run {} --model_size {}` (GPT-2 from {}) or `host-tools run {} {}` (the \
             pack {})?",
            word(prompt),
            size.name(),
            args.models_dir.join(size.name()).display(),
            word(file),
            word(prompt),
            word(file)
        ),
        (Some(size), [prompt]) if guard::is_pack(Path::new(prompt)) => bail!(
            "{} is a pack, but --model_size runs GPT-2 from {}: did you mean `host-tools run {} \
             \"prompt\"` (without --model_size)?",
            word(prompt),
            args.models_dir.join(size.name()).display(),
            word(prompt)
        ),
        (Some(size), prompt) => (Source::Size(size), prompt.first()),
        (None, []) => bail!(
            "give a pack and a prompt (`host-tools run FILE \"prompt\"`), or a GPT-2 size and a \
             prompt (`host-tools run \"prompt\" --model_size 124M`)"
        ),
        (None, [prompt]) if !looks_like_a_path(prompt) && args.generation.tokens.is_none() => {
            bail!(
                "{} is not a file: to run GPT-2 on this prompt as picoGPT does, type `host-tools run \
             {} --model_size 124M`; to run a pack, give it first: `host-tools run FILE {}`",
                word(prompt),
                word(prompt),
                word(prompt)
            )
        }
        (None, [prompt, file])
            if !Path::new(prompt).exists() && guard::is_pack(Path::new(file)) =>
        {
            bail!(
                "{} is not a file: the pack comes first: did you mean `host-tools run {} {}`?",
                word(prompt),
                word(file),
                word(prompt)
            )
        }
        (None, [file, prompt @ ..]) => {
            let file = PathBuf::from(file);
            guard::pack_file(&file)?;
            (Source::Pack(file), prompt.first())
        }
    };
    Ok((source, prompt.cloned().map(utf8_prompt).transpose()?))
}

/// Whether a lone argument is meant as a file: it exists, or has a `/` or the `.pgpt` suffix.
fn looks_like_a_path(arg: &OsString) -> bool {
    let path = Path::new(arg);
    path.exists()
        || arg.as_encoded_bytes().contains(&b'/')
        || path.extension().is_some_and(|e| e == "pgpt")
}

/// The prompt as text, or an error naming the first byte that is not UTF-8.
fn utf8_prompt(raw: OsString) -> Result<String> {
    raw.into_string().map_err(|raw| {
        let bytes = raw.as_encoded_bytes();
        let offset = std::str::from_utf8(bytes).err().map_or(0, |e| e.valid_up_to());
        anyhow!("the prompt is not valid UTF-8 (byte {offset} of {})", bytes.len())
    })
}

/// `--speculate`: 0 to 32 draft tokens (a verifying pass holds one position more).
fn draft_length(text: &str) -> Result<usize, String> {
    const MAX: usize = picogpt_core::speculate::MAX_SPECULATE;
    match text.trim().parse::<usize>() {
        Ok(k) if k <= MAX => Ok(k),
        Ok(k) => Err(format!("{k} is more than {MAX} draft tokens: give 0 to {MAX}")),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// `400K`, `2M`, `1G` or plain bytes (K = 1024; `400KB` and `400KiB` mean the same).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let unit_len = if lower.ends_with("ib") { 2 } else { usize::from(lower.ends_with('b')) };
    let text = match &trimmed[..trimmed.len() - unit_len] {
        bare if bare.ends_with(|c: char| c.is_ascii_alphabetic()) => bare,
        _ => trimmed,
    };
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

/// `--top-k`: 1 to the [`CANDIDATES`] core keeps.
fn top_k(text: &str) -> Result<u32, String> {
    let k: u32 = text.trim().parse().map_err(|_| format!("{text:?} is not a whole number"))?;
    match k {
        0 => Err(format!(
            "0 keeps no token: give 1 to {CANDIDATES}, or leave --top-k out to sample among all"
        )),
        k if k as usize > CANDIDATES => Err(format!(
            "at most {CANDIDATES}: the sampler keeps the {CANDIDATES} most likely tokens"
        )),
        k => Ok(k),
    }
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
    if temperature == 0.0 {
        bail!(
            "--temperature must be positive, got 0: for greedy decoding (what temperature 0 \
             means elsewhere), leave out --temperature, --top-k, --top-p and --seed"
        );
    }
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
