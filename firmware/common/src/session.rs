//! One prompt's generation: picoGPT's greedy loop over core, printing what `host-tools run`
//! prints for each step, then board-independent statistics for the board to report.

use core::fmt::{self, Write};

use picogpt_core::display::{PyRepr, write_candidate};
use picogpt_core::format::MAX_TOKEN_BYTES;
use picogpt_core::kv::KvRangeError;
use picogpt_core::utf8::Utf8Stream;
use picogpt_core::{
    Activations, Candidate, Error, KvCache, KvFormat, Model, RamKv, Storage, TopK, Workspace,
    WorkspaceSpec,
};

use crate::options::{activations_name, kv_name};
use crate::text::{TEXT_BYTES, lossy};

/// Tokens generated when the user does not say (picoGPT's default).
pub const DEFAULT_TOKENS: usize = 40;

/// Most tokens one request may generate (their ids are kept for the `generated:` line).
pub const MAX_GENERATED: usize = 256;

/// A monotonic tick counter: cycles, instructions or microseconds, as the board decides.
pub trait Clock {
    /// Ticks since some fixed point.
    fn now(&mut self) -> u64;
}

/// The board's RAM for one generation.
pub struct Memory<'a> {
    /// Core's working memory (see [`crate::GPT2_124M_WORKSPACE_WORDS`]).
    pub workspace: &'a mut [f32],
    /// The KV cache: as many positions as fit.
    pub kv: &'a mut [u8],
}

/// What to generate, and how.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Prompt token ids; empty starts from `<|endoftext|>`, as GPT-2 does.
    pub prompt: &'a [u32],
    /// Tokens to generate (fewer if `<|endoftext|>` comes first).
    pub n: usize,
    /// KV cache element format.
    pub kv: KvFormat,
    /// Bytes per storage read.
    pub chunk_bytes: usize,
    /// How activations meet int8 weights (`host-tools run --activations`).
    pub activations: Activations,
    /// Most prompt positions per pass over the weights (the workspace may allow fewer).
    pub max_batch: usize,
    /// Check every tensor's CRC during the first pass, which reads them all.
    pub verify: bool,
    /// Print the f32 bits of the three best logits after each step.
    pub bits: bool,
}

/// What a generation cost, in the board's [`Clock`] ticks and storage bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tokens generated.
    pub steps: usize,
    /// Prompt positions per pass over the weights.
    pub batch: usize,
    /// Ticks of the prompt's forward pass (which also yields the first token).
    pub prompt_ticks: u64,
    /// Bytes read by the prompt's forward pass.
    pub prompt_bytes: u64,
    /// Ticks of the forward passes after the first, together.
    pub token_ticks: u64,
    /// Bytes read by the forward passes after the first, together.
    pub token_bytes: u64,
}

impl Stats {
    /// Mean ticks per generated token after the first (`None` when only one was generated).
    pub fn ticks_per_token(&self) -> Option<u64> {
        self.token_ticks.checked_div(self.steps.saturating_sub(1) as u64)
    }

    /// Mean storage bytes per generated token after the first.
    pub fn bytes_per_token(&self) -> Option<u64> {
        self.token_bytes.checked_div(self.steps.saturating_sub(1) as u64)
    }
}

/// Why a generation failed; each displays as one line.
#[derive(Debug)]
pub enum Failure<SE> {
    /// Core rejected the pack or the request, or reading it failed.
    Core(Error<SE, KvRangeError>),
    /// `-n 0`.
    NothingToGenerate,
    /// More tokens asked for than [`MAX_GENERATED`].
    TooManyTokens {
        /// Tokens asked for.
        n: usize,
    },
    /// An empty prompt, and no tokenizer to start from `<|endoftext|>`.
    NoPrompt,
    /// Prompt and generated tokens exceed the model's context.
    TooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Tokens to generate.
        n: usize,
        /// Positions needed.
        needed: usize,
        /// The model's context.
        n_ctx: usize,
    },
    /// The model's working set is larger than the board's workspace.
    Workspace {
        /// Bytes the model needs at batch 1.
        needed: usize,
        /// Bytes the board has.
        available: usize,
    },
    /// The KV cache holds fewer positions than the request needs.
    KvCache {
        /// Positions needed.
        needed: usize,
        /// Positions the RAM holds.
        positions: usize,
        /// Bytes per position.
        position_bytes: usize,
    },
    /// The console refused a write.
    Console,
}

impl<SE> From<Error<SE, KvRangeError>> for Failure<SE> {
    fn from(e: Error<SE, KvRangeError>) -> Self {
        Self::Core(e)
    }
}

impl<SE> From<Error<SE>> for Failure<SE> {
    fn from(e: Error<SE>) -> Self {
        Self::Core(e.with_kv())
    }
}

impl<SE> From<fmt::Error> for Failure<SE> {
    fn from(_: fmt::Error) -> Self {
        Self::Console
    }
}

impl<SE: fmt::Display> fmt::Display for Failure<SE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Core(e) => write!(f, "{e}"),
            Self::NothingToGenerate => write!(f, "-n is 0: nothing to generate"),
            Self::TooManyTokens { n } => {
                write!(
                    f,
                    "-n {n} is more than the {MAX_GENERATED} tokens a board generates at once"
                )
            }
            Self::NoPrompt => {
                write!(f, "this pack has no tokenizer to start from <|endoftext|>: give token ids")
            }
            Self::TooLong { prompt, n, needed, n_ctx } => write!(
                f,
                "prompt of {prompt} tokens + {n} generated needs {needed} positions, n_ctx is {n_ctx}"
            ),
            Self::Workspace { needed, available } => write!(
                f,
                "model too large for this board's RAM: its working memory is {needed} bytes, \
                 the board has {available}"
            ),
            Self::KvCache { needed, positions, position_bytes } => write!(
                f,
                "{needed} positions needed, the KV cache in RAM holds {positions} \
                 ({position_bytes} bytes each): shorten the prompt or -n"
            ),
            Self::Console => write!(f, "console write failed"),
        }
    }
}

/// Generates after `request.prompt`, printing to `out`: `model:`, `workspace:` and `kv:`
/// lines, then for each step `step i: token id ('text')`, the three candidate lines (core's
/// [`write_candidate`]) and, with `bits`, `bits: 0x… 0x… 0x…` (each logit's f32 bits); then
/// `generated: ids` and the text. From the first step line on, the lines (`bits:` aside) are
/// the ones `host-tools run` prints.
pub fn generate<S: Storage, W: Write, C: Clock>(
    model: &mut Model<S>,
    memory: Memory<'_>,
    request: &Request<'_>,
    out: &mut W,
    clock: &mut C,
) -> Result<Stats, Failure<S::Error>> {
    let n = request.n;
    if n == 0 {
        return Err(Failure::NothingToGenerate);
    }
    if n > MAX_GENERATED {
        return Err(Failure::TooManyTokens { n });
    }
    let cfg = *model.config();
    let end_of_text = model.tokenizer().map(|t| t.end_of_text);
    let start = [end_of_text.unwrap_or(0)];
    let prompt = match (request.prompt, end_of_text) {
        ([], None) => return Err(Failure::NoPrompt),
        ([], Some(_)) => &start[..],
        (ids, _) => ids,
    };
    // The last generated token is printed, not fed back.
    let needed = prompt.len() + n - 1;
    let n_ctx = cfg.n_ctx as usize;
    if needed > n_ctx {
        return Err(Failure::TooLong { prompt: prompt.len(), n, needed, n_ctx });
    }
    print_model(model, out)?;
    let spec = workspace_spec(model, memory.workspace.len(), prompt.len(), request)?;
    let mut ws = model.workspace(&spec, memory.workspace)?;
    let kv_bytes = memory.kv.len();
    let mut kv = RamKv::new(&cfg, request.kv, memory.kv);
    let position_bytes = RamKv::bytes_per_position(&cfg, request.kv);
    writeln!(
        out,
        "workspace: {} bytes (batch {}, {}-byte reads, {} activations)",
        model.workspace_bytes(&spec),
        spec.batch,
        spec.chunk_bytes,
        activations_name(spec.activations),
    )?;
    writeln!(
        out,
        "kv: ram {}, {} positions of {position_bytes} bytes ({kv_bytes} bytes of RAM)",
        kv_name(request.kv),
        kv.positions(),
    )?;
    if kv.positions() < needed {
        return Err(Failure::KvCache { needed, positions: kv.positions(), position_bytes });
    }
    let mut stats = Stats { batch: spec.batch, ..Stats::default() };
    let mut generated = heapless::Vec::<u32, MAX_GENERATED>::new();
    let mut pos = 0;
    for step in 0..n {
        let last = generated.last().copied().unwrap_or(0);
        let input = if step == 0 { prompt } else { core::slice::from_ref(&last) };
        model.set_verify(request.verify && step == 0);
        let mut top = TopK::<3>::new();
        let (t0, b0) = (clock.now(), model.bytes_read());
        model.forward(&mut ws, &mut kv, input, pos, &mut top)?;
        let (ticks, bytes) =
            (clock.now().saturating_sub(t0), model.bytes_read().saturating_sub(b0));
        if step == 0 {
            (stats.prompt_ticks, stats.prompt_bytes) = (ticks, bytes);
        } else {
            stats.token_ticks += ticks;
            stats.token_bytes += bytes;
        }
        // The vocabulary is never empty (core checks the config), so there is a best token.
        let token = top.argmax().unwrap_or(0);
        print_step(model, out, step + 1, token, &top.candidates(), request.bits)?;
        // Cannot fail: at most n ≤ MAX_GENERATED tokens are pushed.
        let _ = generated.push(token);
        stats.steps += 1;
        if Some(token) == end_of_text {
            break;
        }
        pos += input.len();
    }
    finish(model, out, &generated, end_of_text)?;
    Ok(stats)
}

/// `model: 12 layers, n_embd 768, 12 heads, n_ctx 1024, vocab 50257, int8 (blocks of 32)`.
fn print_model<S: Storage, W: Write>(model: &Model<S>, out: &mut W) -> fmt::Result {
    let cfg = model.config();
    writeln!(
        out,
        "model: {} layers, n_embd {}, {} heads, n_ctx {}, vocab {}, {}",
        cfg.n_layer,
        cfg.n_embd,
        cfg.n_head,
        cfg.n_ctx,
        cfg.vocab_size,
        model.layout().quant().matrices
    )
}

/// The largest prompt batch whose workspace fits, or why none does.
fn workspace_spec<S: Storage>(
    model: &Model<S>,
    words: usize,
    prompt: usize,
    request: &Request<'_>,
) -> Result<WorkspaceSpec, Failure<S::Error>> {
    let available = 4 * words;
    let most = prompt.min(request.max_batch).max(1);
    (1..=most)
        .rev()
        .map(|batch| spec(batch, request))
        .find(|spec| Workspace::bytes(model.layout(), spec) <= available)
        .ok_or_else(|| {
            let needed = model.workspace_bytes(&spec(1, request));
            Failure::Workspace { needed, available }
        })
}

/// The workspace spec of `request` at `batch`.
fn spec(batch: usize, request: &Request<'_>) -> WorkspaceSpec {
    WorkspaceSpec::new(batch, request.chunk_bytes).with_activations(request.activations)
}

/// One step's lines, exactly as `host-tools run` prints them.
fn print_step<S: Storage, W: Write>(
    model: &mut Model<S>,
    out: &mut W,
    index: usize,
    token: u32,
    candidates: &[Candidate],
    bits: bool,
) -> Result<(), Failure<S::Error>> {
    let (mut raw, mut text) = ([0u8; MAX_TOKEN_BYTES as usize], [0u8; TEXT_BYTES]);
    write!(out, "step {index}: token {token}")?;
    if model.tokenizer().is_some() {
        write!(out, " ({})", PyRepr(lossy(model.token_bytes(token, &mut raw)?, &mut text)))?;
    }
    writeln!(out)?;
    for (rank, candidate) in candidates.iter().enumerate() {
        let shown = match model.tokenizer() {
            Some(_) => Some(lossy(model.token_bytes(candidate.token, &mut raw)?, &mut text)),
            None => None,
        };
        write_candidate(out, rank + 1, candidate, shown)?;
        writeln!(out)?;
    }
    if bits {
        write!(out, "bits:")?;
        for candidate in candidates {
            write!(out, " {:#010x}", candidate.logit.to_bits())?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `generated: 1,2,3` and, with a tokenizer, the generated text without `<|endoftext|>`.
fn finish<S: Storage, W: Write>(
    model: &mut Model<S>,
    out: &mut W,
    generated: &[u32],
    end_of_text: Option<u32>,
) -> Result<(), Failure<S::Error>> {
    write!(out, "generated: ")?;
    for (i, id) in generated.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        write!(out, "{comma}{id}")?;
    }
    writeln!(out)?;
    let Some(end_of_text) = end_of_text else { return Ok(()) };
    let mut raw = [0u8; MAX_TOKEN_BYTES as usize];
    let mut stream = Utf8Stream::new();
    let mut result = Ok(());
    let mut emit = |piece: &str| result = result.and(out.write_str(piece));
    for &id in generated.iter().filter(|&&id| id != end_of_text) {
        stream.push(model.token_bytes(id, &mut raw)?, &mut emit);
    }
    stream.finish(&mut emit);
    result?;
    writeln!(out)?;
    Ok(())
}

/// The timing lines of a board whose [`Clock`] ticks `ticks_per_ms` times a millisecond:
/// `prompt pass: 1234.5 ms (batch 1)`, then, after more than one step, `ms per token: 678.9`
/// and `bytes read per token: 132142576`; `clock` qualifies the milliseconds (`emulated`),
/// or is empty.
pub fn write_timing<W: Write>(
    out: &mut W,
    stats: &Stats,
    ticks_per_ms: u64,
    clock: &str,
) -> fmt::Result {
    let sep = if clock.is_empty() { "" } else { " " };
    let tenths = |ticks: u64| ticks.saturating_mul(10) / ticks_per_ms.max(1);
    let prompt = tenths(stats.prompt_ticks);
    let batch = stats.batch;
    writeln!(out, "prompt pass: {}.{} ms{sep}{clock} (batch {batch})", prompt / 10, prompt % 10)?;
    if let (Some(ticks), Some(bytes)) = (stats.ticks_per_token(), stats.bytes_per_token()) {
        let token = tenths(ticks);
        writeln!(out, "ms per token: {}.{}{sep}{clock}", token / 10, token % 10)?;
        writeln!(out, "bytes read per token: {bytes}")?;
    }
    Ok(())
}
