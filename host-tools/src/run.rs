//! `run`: generation with core over a packed file, exactly as a board runs it: the prompt is
//! encoded and the tokens decoded by core's own tokenizer over the pack.

use std::io;
use std::path::Path;
use std::time::Instant;

use picogpt_core::kv::KvRangeError;
use picogpt_core::sample::CANDIDATES;
use picogpt_core::{KvFormat, Model, Picker, RamKv, Sampling, WorkspaceSpec};

use crate::file_storage::FileStorage;
use crate::report::{RunReport, StepReport, TopEntry};

/// core's error type over a host file and an in-RAM KV cache.
pub type CoreError = picogpt_core::Error<io::Error, KvRangeError>;

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
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pack could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The pack.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The pack or the request is invalid, or reading failed.
    #[error("{path}: {source}")]
    Core {
        /// The pack.
        path: String,
        /// core's error.
        source: CoreError,
    },
    /// The request does not fit the model.
    #[error("prompt of {prompt} tokens + {n} generated needs {needed} positions, n_ctx is {n_ctx}")]
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
    /// An empty token-id prompt (an empty text prompt starts from `<|endoftext|>`).
    #[error("the prompt has no token ids")]
    EmptyTokens,
}

/// Generates after the prompt; `on_step` sees each step as soon as it is chosen.
pub fn run(
    path: &Path,
    opts: &RunOptions,
    mut on_step: impl FnMut(&StepReport),
) -> Result<RunReport, RunError> {
    let name = path.display().to_string();
    let core = |source| RunError::Core { path: name.clone(), source };
    if opts.n == 0 {
        return Err(RunError::NothingToGenerate);
    }
    let storage =
        FileStorage::open(path).map_err(|source| RunError::Open { path: name.clone(), source })?;
    let mut model = Model::open(storage).map_err(|e| core(e.with_kv()))?;
    let cfg = *model.config();
    let end_of_text = model.tokenizer().map(|t| t.end_of_text);
    let prompt = prompt_tokens(&mut model, &opts.prompt).map_err(|e| core(e.with_kv()))?;
    // The last generated token is printed, not fed back.
    let needed = prompt.len() + opts.n - 1;
    if needed > cfg.n_ctx as usize {
        let (prompt, n, n_ctx) = (prompt.len(), opts.n, cfg.n_ctx as usize);
        return Err(RunError::TooLong { prompt, n, needed, n_ctx });
    }
    let spec =
        WorkspaceSpec { batch: opts.batch.clamp(1, prompt.len()), chunk_bytes: opts.chunk_bytes };
    let working_bytes = model.workspace_bytes(&spec) as u64;
    let mut ws_mem = vec![0.0f32; working_bytes as usize / 4];
    let mut ws = model.workspace(&spec, &mut ws_mem).map_err(|e| core(e.with_kv()))?;
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, opts.kv) * needed];
    let mut kv = RamKv::new(&cfg, opts.kv, &mut kv_mem);

    let mut steps = Vec::with_capacity(opts.n);
    let mut input = prompt.clone();
    let mut pos = 0;
    let mut prefill_ms = 0.0;
    let started = Instant::now();
    for step in 0..opts.n {
        model.set_verify(opts.verify && step == 0);
        let t0 = Instant::now();
        let mut picker = Picker::<CANDIDATES>::new(opts.sampling, step as u64);
        model.forward(&mut ws, &mut kv, &input, pos, &mut picker).map_err(core)?;
        if step == 0 {
            prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        }
        let choice = picker.choose();
        let mut top = Vec::with_capacity(3);
        for c in picker.candidates::<3>() {
            let text = token_bytes(&mut model, c.token).map_err(|e| core(e.with_kv()))?;
            let text = text.map(|b| String::from_utf8_lossy(&b).into_owned());
            top.push(TopEntry { id: c.token, logit: c.logit, prob: f64::from(c.prob), text });
        }
        let bytes = token_bytes(&mut model, choice.token).map_err(|e| core(e.with_kv()))?;
        let report = StepReport {
            token: choice.token,
            text: bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            bytes: bytes.unwrap_or_default(),
            top,
            truncated: choice.truncated,
        };
        on_step(&report);
        steps.push(report);
        if Some(choice.token) == end_of_text {
            break;
        }
        pos += input.len();
        input = vec![choice.token];
    }
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let after_first = steps.len().saturating_sub(1);
    let ms_per_token =
        if after_first > 0 { (total_ms - prefill_ms) / after_first as f64 } else { 0.0 };
    let text = end_of_text.map(|eot| {
        let bytes: Vec<u8> =
            steps.iter().filter(|s| s.token != eot).flat_map(|s| s.bytes.iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    });
    Ok(RunReport {
        model: cfg,
        quant: quant_name(&model.layout().quant().matrices),
        prompt,
        steps,
        text,
        first_logits: None,
        bytes_read: model.bytes_read(),
        working_bytes,
        prefill_ms,
        ms_per_token,
    })
}

/// The prompt as token ids, encoded by core when it is text.
fn prompt_tokens(
    model: &mut Model<FileStorage>,
    prompt: &Prompt,
) -> Result<Vec<u32>, picogpt_core::Error<io::Error>> {
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
fn token_bytes(
    model: &mut Model<FileStorage>,
    token: u32,
) -> Result<Option<Vec<u8>>, picogpt_core::Error<io::Error>> {
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
    }
}
