//! `run`: generation with core over a packed file, exactly as a board runs it: the prompt is
//! encoded and the tokens decoded by core's own tokenizer over the pack.

use std::io;
use std::path::Path;
use std::time::Instant;

use picogpt_core::kv::{self, KvCache};
use picogpt_core::sample::CANDIDATES;
use picogpt_core::speculate::{self, Context, DraftSpec};
use picogpt_core::{
    Activations, KvFormat, MatrixFormat, Model, Picker, RamKv, Sampling, Storage, StorageKv,
    TieredKv, Workers, Workspace, WorkspaceSpec,
};

use crate::cpu::{self, KernelLevel};
use crate::file_storage::{FileStorage, KvFile};
use crate::mapped::MappedFile;
use crate::prefetch::PrefetchingFile;
use crate::report::{Engine, RunReport, StepReport, TopEntry};
use crate::threads::ThreadPool;

/// Draft tokens per pass by default (`run --speculate`): see the README's figures.
pub use picogpt_core::speculate::DEFAULT_SPECULATE;
/// What a generation's passes over the weights verified (core's, shared with the boards).
pub use picogpt_core::speculate::Passes;

/// BPE scratch for the device encoder: pieces up to 1 KiB.
const ENCODE_SCRATCH_WORDS: usize = 2 * 1024 + 2;

/// What the model continues.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Token ids, used as given (works without a tokenizer in the pack).
    Tokens(Vec<u32>),
    /// Text, encoded by core from the pack's tokenizer; empty text starts from
    /// `<|endoftext|>`, as GPT-2 does.
    Text(String),
}

/// What to generate and with how much memory.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// The prompt.
    pub prompt: Prompt,
    /// Tokens to generate (fewer if `<|endoftext|>` comes first).
    pub n: usize,
    /// Bytes per storage read.
    pub chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    pub batch: usize,
    /// KV cache element format.
    pub kv: KvFormat,
    /// Check every tensor's CRC during the first pass (which reads them all).
    pub verify: bool,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// Kernel path for int8 weights.
    pub activations: Activations,
    /// Read the next chunk on a second thread while core computes (double buffering).
    pub prefetch: bool,
    /// Map the pack into memory and let core compute on it in place (no copy into the
    /// chunk buffer); `false` reads it chunk by chunk, as a board reads its card.
    pub mmap: bool,
    /// Workers each matrix's rows are split between (0: every core available).
    pub threads: usize,
    /// Which kernels core uses.
    pub kernels: KernelLevel,
    /// Emulate a board's RAM: workspace and KV cache must fit these bytes; KV positions that
    /// do not are spilled to a file. `None`: all in RAM.
    pub ram_budget: Option<usize>,
    /// Draft up to this many tokens per pass by prompt lookup and verify them in the same
    /// pass (0: one token per pass). The text is the same either way.
    pub speculate: usize,
}

impl RunOptions {
    /// Greedy generation of `n` tokens after the token ids `prompt`, with the host defaults.
    pub fn new(prompt: Vec<u32>, n: usize) -> Self {
        Self::with_prompt(Prompt::Tokens(prompt), n)
    }

    /// Greedy generation of `n` tokens after `prompt`, with the host defaults.
    pub fn with_prompt(prompt: Prompt, n: usize) -> Self {
        Self {
            prompt,
            n,
            chunk_bytes: 64 * 1024,
            batch: 64,
            kv: KvFormat::F32,
            verify: true,
            sampling: Sampling::Greedy,
            activations: Activations::F32,
            prefetch: false,
            mmap: true,
            threads: 0,
            kernels: KernelLevel::Best,
            ram_budget: None,
            speculate: DEFAULT_SPECULATE,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pack could not be opened.
    #[error("{path}: {error}")]
    Open {
        /// The pack.
        path: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The pack or the request is invalid, or reading failed (core's error, whose type
    /// depends on the KV cache in use).
    #[error("{path}: {error}")]
    Core {
        /// The pack.
        path: String,
        /// core's error.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The RAM budget does not even hold the workspace.
    #[error(
        "a RAM budget of {budget} bytes is less than the {workspace} bytes the workspace needs"
    )]
    Budget {
        /// The budget.
        budget: usize,
        /// Bytes of the workspace.
        workspace: usize,
    },
    /// The spill file for the KV cache could not be created.
    #[error("creating the KV spill file: {0}")]
    SpillFile(io::Error),
    /// The kernels asked for need CPU features this machine lacks.
    #[error(transparent)]
    Kernels(#[from] cpu::Unsupported),
    /// The worker threads could not be started.
    #[error("starting {threads} worker threads: {error}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// The OS's error.
        error: io::Error,
    },
    /// The request does not fit the model.
    #[error(
        "prompt of {prompt} tokens + {n} generated needs {needed} positions, n_ctx is \
         {n_ctx}{}",
        longest_n(*prompt, *n_ctx)
    )]
    TooLong {
        /// Prompt length.
        prompt: usize,
        /// Tokens to generate.
        n: usize,
        /// Positions needed.
        needed: usize,
        /// The model's context.
        n_ctx: usize,
    },
    /// Nothing to do.
    #[error("-n is 0: nothing to generate")]
    NothingToGenerate,
    /// The int8 activation path was asked for, but the pack has no integer matrices for it.
    #[error(
        "{path}: --activations int8 changes only int8 and int4 matrices, and this pack's are \
         {format}: leave it out"
    )]
    NoIntegerMatrices {
        /// The pack.
        path: String,
        /// Its matrix format.
        format: picogpt_core::MatrixFormat,
    },
}

/// `: -n N fits`, the most the context holds after this prompt, or `: the prompt alone is too
/// long`.
fn longest_n(prompt: usize, n_ctx: usize) -> String {
    match (n_ctx + 1).checked_sub(prompt) {
        Some(n) if n > 0 && prompt > 0 => format!(": -n {n} fits"),
        _ => ": the prompt alone is too long".to_owned(),
    }
}

/// Generates after the prompt; `on_step` sees each step as soon as it is chosen.
pub fn run(
    path: &Path,
    opts: &RunOptions,
    on_step: impl FnMut(&StepReport),
) -> Result<RunReport, RunError> {
    let name = path.display().to_string();
    if opts.n == 0 {
        return Err(RunError::NothingToGenerate);
    }
    let open_error = |error| RunError::Open { path: name.clone(), error };
    if opts.prefetch {
        let storage = PrefetchingFile::open(path).map_err(open_error)?;
        run_storage(storage, &name, opts, on_step)
    } else if opts.mmap {
        let storage = MappedFile::open(path).map_err(open_error)?;
        run_storage(storage, &name, opts, on_step)
    } else {
        let storage = FileStorage::open(path).map_err(open_error)?;
        run_storage(storage, &name, opts, on_step)
    }
}

/// Where the KV cache lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct KvPlan {
    /// Positions held in RAM.
    pub ram_positions: usize,
    /// Positions spilled to a file, as a board spills to its SD card.
    pub spilled_positions: usize,
}

/// Generation over any storage of the pack (`name` labels its errors): plans the memory,
/// then runs the steps. [`run`] is this over the file.
pub fn run_storage<S>(
    storage: S,
    name: &str,
    opts: &RunOptions,
    on_step: impl FnMut(&StepReport),
) -> Result<RunReport, RunError>
where
    S: Storage,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let core = core_error(name);
    let mut model = Model::open(storage).map_err(|e| core(Box::new(e)))?;
    model.set_kernels(cpu::kernels(opts.kernels)?);
    let threads = if opts.threads == 0 { ThreadPool::available() } else { opts.threads };
    let mut pool =
        ThreadPool::new(threads).map_err(|error| RunError::Threads { threads, error })?;
    let cfg = *model.config();
    let quant = model.layout().quant();
    let integer = |f: &MatrixFormat| !matches!(f, MatrixFormat::F32 | MatrixFormat::F16);
    if opts.activations == Activations::Int8
        && !integer(&quant.matrices)
        && !quant.overrides.iter().any(|o| integer(&o.format))
    {
        return Err(RunError::NoIntegerMatrices { path: name.to_owned(), format: quant.matrices });
    }
    let prompt = prompt_tokens(&mut model, &opts.prompt).map_err(|e| core(Box::new(e)))?;
    // The last generated token is printed, not fed back.
    let needed = prompt.len() + opts.n - 1;
    if needed > cfg.n_ctx as usize {
        let (prompt, n, n_ctx) = (prompt.len(), opts.n, cfg.n_ctx as usize);
        return Err(RunError::TooLong { prompt, n, needed, n_ctx });
    }
    // A verifying pass runs the last token and the draft together.
    let batch = opts.batch.clamp(1, prompt.len()).max(opts.speculate + 1);
    let spec = WorkspaceSpec::new(batch, opts.chunk_bytes).with_activations(opts.activations);
    let workspace = model.workspace_bytes(&spec);
    let ram_positions = match opts.ram_budget {
        None => needed,
        Some(budget) => {
            let spill_buffer = StorageKv::<KvFile>::buffer_bytes(&cfg, opts.kv);
            let kv_budget = budget.checked_sub(workspace + spill_buffer);
            let kv_budget = kv_budget.ok_or(RunError::Budget { budget, workspace })?;
            kv::positions_in(&cfg, opts.kv, kv_budget).min(needed)
        }
    };
    let plan = KvPlan { ram_positions, spilled_positions: needed - ram_positions };
    let mut ws_mem = vec![0.0f32; workspace / 4];
    let mut ws = model.workspace(&spec, &mut ws_mem).map_err(|e| core(Box::new(e)))?;
    if opts.verify {
        // The first pass checks what it streams; this checks the rest it will use.
        model.verify_unstreamed(&mut ws).map_err(|e| core(Box::new(e)))?;
    }
    let mut kv_mem = vec![0u8; kv::bytes_per_position(&cfg, opts.kv) * ram_positions];
    let ram = RamKv::new(&cfg, opts.kv, &mut kv_mem);
    let mut steps = if plan.spilled_positions == 0 {
        Steps::run(&mut model, &mut ws, &mut pool, ram, &prompt, opts, name, on_step)?
    } else {
        let per_position = kv::bytes_per_position(&cfg, opts.kv) as u64;
        let file = KvFile::create(per_position * plan.spilled_positions as u64)
            .map_err(RunError::SpillFile)?;
        let mut buf = vec![0u8; StorageKv::<KvFile>::buffer_bytes(&cfg, opts.kv)];
        let spill = StorageKv::new(&cfg, opts.kv, file, 0, plan.spilled_positions, &mut buf)
            .map_err(|e| core(Box::new(e)))?;
        let kv = TieredKv::new(ram, spill);
        Steps::run(&mut model, &mut ws, &mut pool, kv, &prompt, opts, name, on_step)?
    };
    let mapped = model.storage().slice_at(model.layout().data_start(), 1).is_some();
    let engine =
        Engine { kernels: model.kernels().name.to_owned(), threads: pool.threads(), mapped };
    let end_of_text = model.tokenizer().map(|t| t.end_of_text);
    let text = end_of_text.map(|eot| {
        let bytes: Vec<u8> = steps
            .reports
            .iter()
            .filter(|s| s.token != eot)
            .flat_map(|s| s.bytes.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    });
    Ok(RunReport {
        model: cfg,
        quant: quant_name(&model.layout().quant().matrices),
        prompt,
        steps: std::mem::take(&mut steps.reports),
        text,
        first_logits: None,
        bytes_read: model.bytes_read(),
        working_bytes: workspace as u64,
        prefill_ms: steps.prefill_ms,
        ms_per_token: steps.ms_per_token,
        kv: Some(plan),
        passes: Some(steps.passes),
        engine: Some(engine),
    })
}

/// Wraps core's errors (of whatever KV cache) with the pack's name.
fn core_error(name: &str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> RunError + '_ {
    move |error| RunError::Core { path: name.to_owned(), error }
}

/// The generated steps and their timing.
struct Steps {
    reports: Vec<StepReport>,
    prefill_ms: f64,
    ms_per_token: f64,
    passes: Passes,
}

impl Steps {
    /// The prompt's pass, then one pass per generated token (or per verified draft), until
    /// `-n` or `<|endoftext|>`.
    #[allow(clippy::too_many_arguments)]
    fn run<S, K>(
        model: &mut Model<S>,
        ws: &mut Workspace<'_>,
        workers: &mut dyn Workers,
        mut kv: K,
        prompt: &[u32],
        opts: &RunOptions,
        name: &str,
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<Self, RunError>
    where
        S: Storage,
        S::Error: std::error::Error + Send + Sync + 'static,
        K: KvCache,
        K::Error: std::error::Error + Send + Sync + 'static,
    {
        let core = core_error(name);
        let end_of_text = model.tokenizer().map(|t| t.end_of_text);
        let mut reports = Vec::with_capacity(opts.n);
        let mut generated: Vec<u32> = Vec::with_capacity(opts.n);
        let mut passes = Passes::default();
        let mut input = vec![0u32; opts.speculate + 1];
        let mut prefill_ms = 0.0;
        let started = Instant::now();
        while generated.len() < opts.n {
            let step = generated.len();
            model.set_verify(opts.verify && step == 0);
            let t0 = Instant::now();
            let mut pickers: Vec<Picker<CANDIDATES>>;
            let drafted = match generated.last() {
                None => {
                    pickers = vec![Picker::new(opts.sampling, 0)];
                    model
                        .forward_with(ws, &mut kv, prompt, 0, &mut pickers[0], workers)
                        .map_err(|e| core(Box::new(e)))?;
                    prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
                    0
                }
                Some(&last) => {
                    // Never draft past -n: the pass yields up to drafted + 1 tokens.
                    let room = (opts.n - step - 1).min(opts.speculate);
                    let context = Context { prompt, generated: &generated };
                    let drafted =
                        speculate::pass_input(context, last, &DraftSpec::DEFAULT, room, &mut input);
                    pickers = (0..=drafted)
                        .map(|j| Picker::new(opts.sampling, (step + j) as u64))
                        .collect();
                    let pos = prompt.len() + step - 1;
                    model
                        .forward_each_with(
                            ws,
                            &mut kv,
                            &input[..=drafted],
                            pos,
                            &mut pickers,
                            workers,
                        )
                        .map_err(|e| core(Box::new(e)))?;
                    drafted
                }
            };
            let accepted = speculate::accepted(&pickers, &input[1..=drafted]);
            passes.count(drafted, accepted, step == 0);
            let mut ended = false;
            for picker in &pickers[..=accepted] {
                let report = step_report(model, picker).map_err(|e| core(Box::new(e)))?;
                let token = report.token;
                on_step(&report);
                reports.push(report);
                generated.push(token);
                ended = Some(token) == end_of_text;
                if ended {
                    break;
                }
            }
            if ended {
                break;
            }
        }
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        let after_first = reports.len().saturating_sub(1);
        let ms_per_token =
            if after_first > 0 { (total_ms - prefill_ms) / after_first as f64 } else { 0.0 };
        Ok(Self { reports, prefill_ms, ms_per_token, passes })
    }
}

/// What one step's picker chose, with the three best candidates and the tokens' text.
fn step_report<S: Storage>(
    model: &mut Model<S>,
    picker: &Picker<CANDIDATES>,
) -> Result<StepReport, picogpt_core::Error<S::Error>> {
    let choice = picker.choose();
    let mut top = Vec::with_capacity(3);
    for c in picker.candidates::<3>() {
        let text = token_bytes(model, c.token)?.map(|b| String::from_utf8_lossy(&b).into_owned());
        top.push(TopEntry { id: c.token, logit: c.logit, prob: f64::from(c.prob), text });
    }
    let bytes = token_bytes(model, choice.token)?;
    Ok(StepReport {
        token: choice.token,
        text: bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        bytes: bytes.unwrap_or_default(),
        top,
        truncated: choice.truncated,
    })
}

/// The prompt as token ids, encoded by core when it is text.
fn prompt_tokens<S: Storage>(
    model: &mut Model<S>,
    prompt: &Prompt,
) -> Result<Vec<u32>, picogpt_core::Error<S::Error>> {
    match prompt {
        Prompt::Tokens(ids) if ids.is_empty() => Err(picogpt_core::Error::EmptyInput),
        Prompt::Tokens(ids) => Ok(ids.clone()),
        Prompt::Text(text) if text.is_empty() => {
            let tokenizer = model.tokenizer().ok_or(picogpt_core::Error::NoTokenizer)?;
            Ok(vec![tokenizer.end_of_text])
        }
        Prompt::Text(text) => {
            let mut scratch = vec![0u32; ENCODE_SCRATCH_WORDS];
            // Every byte is at most one token.
            let mut out = vec![0u32; text.len()];
            let n = model.encode(text.as_bytes(), &mut scratch, &mut out)?;
            out.truncate(n);
            Ok(out)
        }
    }
}

/// A token's bytes as core decodes them from the pack (`None` without a tokenizer).
fn token_bytes<S: Storage>(
    model: &mut Model<S>,
    token: u32,
) -> Result<Option<Vec<u8>>, picogpt_core::Error<S::Error>> {
    if model.tokenizer().is_none() {
        return Ok(None);
    }
    let mut buf = [0u8; picogpt_core::format::MAX_TOKEN_BYTES as usize];
    Ok(Some(model.token_bytes(token, &mut buf)?.to_vec()))
}

/// `f32`, `f16` or `int8`: the name the JSON report uses.
pub fn quant_name(format: &picogpt_core::MatrixFormat) -> String {
    match format {
        picogpt_core::MatrixFormat::F32 => "f32".into(),
        picogpt_core::MatrixFormat::F16 => "f16".into(),
        picogpt_core::MatrixFormat::Int8 { .. } => "int8".into(),
        picogpt_core::MatrixFormat::Int4 => "int4".into(),
        picogpt_core::MatrixFormat::Affine { bits, block } => format!("q{bits}m/{block}"),
    }
}
