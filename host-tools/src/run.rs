//! `run`: greedy generation with core over a packed file, exactly as a board runs it.

use std::io;
use std::path::Path;
use std::time::Instant;

use picogpt_core::kv::KvRangeError;
use picogpt_core::{KvFormat, Model, RamKv, TopK, WorkspaceSpec};

use crate::file_storage::FileStorage;
use crate::report::{RunReport, StepReport, TopEntry};

/// core's error type over a host file and an in-RAM KV cache.
pub type CoreError = picogpt_core::Error<io::Error, KvRangeError>;

/// What to generate and with how much memory.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Tokens to generate.
    pub n: usize,
    /// Bytes per storage read.
    pub chunk_bytes: usize,
    /// Prompt positions per pass over the weights.
    pub batch: usize,
    /// KV cache element format.
    pub kv: KvFormat,
    /// Check every tensor's CRC during the first pass (which reads them all).
    pub verify: bool,
}

impl RunOptions {
    /// Greedy generation of `n` tokens after `prompt` with the host defaults.
    pub fn new(prompt: Vec<u32>, n: usize) -> Self {
        Self { prompt, n, chunk_bytes: 64 * 1024, batch: 64, kv: KvFormat::F32, verify: true }
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
    #[error("the prompt is empty and -n is 0")]
    Empty,
}

/// Generates greedily; `on_step` sees each step as soon as it is chosen.
pub fn run(
    path: &Path,
    opts: &RunOptions,
    mut on_step: impl FnMut(&StepReport),
) -> Result<RunReport, RunError> {
    let name = path.display().to_string();
    let core = |source| RunError::Core { path: name.clone(), source };
    if opts.prompt.is_empty() || opts.n == 0 {
        return Err(RunError::Empty);
    }
    let storage =
        FileStorage::open(path).map_err(|source| RunError::Open { path: name.clone(), source })?;
    let mut model = Model::open(storage).map_err(|e| core(e.with_kv()))?;
    let cfg = *model.config();
    // The last generated token is printed, not fed back.
    let needed = opts.prompt.len() + opts.n - 1;
    if needed > cfg.n_ctx as usize {
        let (prompt, n, n_ctx) = (opts.prompt.len(), opts.n, cfg.n_ctx as usize);
        return Err(RunError::TooLong { prompt, n, needed, n_ctx });
    }
    let spec = WorkspaceSpec {
        batch: opts.batch.clamp(1, opts.prompt.len()),
        chunk_bytes: opts.chunk_bytes,
    };
    let working_bytes = model.workspace_bytes(&spec) as u64;
    let mut ws_mem = vec![0.0f32; working_bytes as usize / 4];
    let mut ws = model.workspace(&spec, &mut ws_mem).map_err(|e| core(e.with_kv()))?;
    let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, opts.kv) * needed];
    let mut kv = RamKv::new(&cfg, opts.kv, &mut kv_mem);

    let mut steps = Vec::with_capacity(opts.n);
    let mut input = opts.prompt.clone();
    let mut pos = 0;
    let mut prefill_ms = 0.0;
    let started = Instant::now();
    for step in 0..opts.n {
        model.set_verify(opts.verify && step == 0);
        let t0 = Instant::now();
        let mut top = TopK::<3>::new();
        model.forward(&mut ws, &mut kv, &input, pos, &mut top).map_err(core)?;
        if step == 0 {
            prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        }
        let top: Vec<TopEntry> = top
            .candidates()
            .iter()
            .map(|c| TopEntry { id: c.token, logit: c.logit, prob: f64::from(c.prob) })
            .collect();
        let token = top[0].id;
        let report = StepReport { token, top };
        on_step(&report);
        steps.push(report);
        pos += input.len();
        input = vec![token];
    }
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let ms_per_token = if opts.n > 1 { (total_ms - prefill_ms) / (opts.n - 1) as f64 } else { 0.0 };
    Ok(RunReport {
        model: cfg,
        quant: quant_name(&model.layout().quant().matrices),
        prompt: opts.prompt.clone(),
        steps,
        first_logits: None,
        bytes_read: model.bytes_read(),
        working_bytes,
        prefill_ms,
        ms_per_token,
    })
}

/// `f32`, `f16` or `int8`: the name the JSON report uses.
pub fn quant_name(format: &picogpt_core::MatrixFormat) -> String {
    match format {
        picogpt_core::MatrixFormat::F32 => "f32".into(),
        picogpt_core::MatrixFormat::F16 => "f16".into(),
        picogpt_core::MatrixFormat::Int8 { .. } => "int8".into(),
    }
}
