//! One prompt's generation: picoGPT's greedy loop over core, printing what `host-tools run`
//! prints for each step, then board-independent statistics for the board to report.

use core::fmt::Write;

use picogpt_core::{Activations, Error, KvFormat, Model, Storage, TopK, Workspace, WorkspaceSpec};

use crate::failure::Failure;
use crate::kv::{Spill, SpillStorageError, place};
use crate::options::activations_name;
use crate::print;
use crate::prompt::Input;

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
    /// Token ids of an encoded text prompt ([`crate::MAX_PROMPT`]).
    pub tokens: &'a mut [u32],
    /// BPE merge state while a text prompt is encoded ([`crate::BPE_SCRATCH_WORDS`]).
    pub bpe: &'a mut [u32],
}

impl Memory<'_> {
    /// The same buffers, lent for one generation.
    pub fn reborrow(&mut self) -> Memory<'_> {
        Memory {
            workspace: &mut *self.workspace,
            kv: &mut *self.kv,
            tokens: &mut *self.tokens,
            bpe: &mut *self.bpe,
        }
    }
}

/// What to generate, and how.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The prompt: ids, or text to encode; empty starts from `<|endoftext|>`, as GPT-2 does.
    pub prompt: &'a Input<'a>,
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

/// The failure of a generation over `S` with spill storage from `P`.
pub type GenerateFailure<S, P> = Failure<<S as Storage>::Error, SpillStorageError<P>>;

/// Generates after `request.prompt`, printing to `out`: `model:`, `prompt:` (the ids of a
/// text prompt), `workspace:` and `kv:` lines, then for each step `step i: token id
/// ('text')`, the three candidate lines (core's `write_candidate`) and, with `bits`,
/// `bits: 0x… 0x… 0x…` (each logit's f32 bits); then `generated: ids` and the text. From the
/// first step line on, the lines (`bits:` aside) are the ones `host-tools run` prints.
///
/// The KV cache is in `memory.kv`; positions beyond what it holds go to storage from `spill`,
/// opened only then.
pub fn generate<S: Storage, P: Spill, W: Write, C: Clock>(
    model: &mut Model<S>,
    memory: Memory<'_>,
    spill: &mut P,
    request: &Request<'_>,
    out: &mut W,
    clock: &mut C,
) -> Result<Stats, GenerateFailure<S, P>> {
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
    let Memory { workspace, kv, tokens, bpe } = memory;
    let prompt = match request.prompt {
        Input::Tokens(ids) if ids.is_empty() => {
            end_of_text.ok_or(Failure::NoPrompt)?;
            &start[..]
        }
        Input::Tokens(ids) => &ids[..],
        Input::Text("") => {
            end_of_text.ok_or(Failure::Core(Error::NoTokenizer))?;
            &start[..]
        }
        Input::Text(text) => encode(model, text, tokens, bpe)?,
    };
    // The last generated token is printed, not fed back.
    let needed = prompt.len() + n - 1;
    let n_ctx = cfg.n_ctx as usize;
    if needed > n_ctx {
        return Err(Failure::TooLong { prompt: prompt.len(), n, needed, n_ctx });
    }
    print::model(model, out)?;
    if let Input::Text(text) = request.prompt
        && !text.is_empty()
    {
        print::prompt(out, prompt)?;
    }
    let spec = workspace_spec(model, workspace.len(), prompt.len(), request)?;
    let mut ws = model.workspace(&spec, workspace)?;
    writeln!(
        out,
        "workspace: {} bytes (batch {}, {}-byte reads, {} activations)",
        model.workspace_bytes(&spec),
        spec.batch,
        spec.chunk_bytes,
        activations_name(spec.activations),
    )?;
    let ram_bytes = kv.len();
    let (mut kv, placement) = place(&cfg, request.kv, kv, needed, spill)?;
    print::kv(out, request.kv, &placement, ram_bytes, spill)?;
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
        print::step(model, out, step + 1, token, &top.candidates(), request.bits)?;
        // Cannot fail: at most n ≤ MAX_GENERATED tokens are pushed.
        let _ = generated.push(token);
        stats.steps += 1;
        if Some(token) == end_of_text {
            break;
        }
        pos += input.len();
    }
    print::finish(model, out, &generated, end_of_text)?;
    Ok(stats)
}

/// Encodes `text` into `tokens` with the pack's tokenizer (`bpe` for the merge state);
/// returns the ids. A pack without a tokenizer is core's `NoTokenizer` error.
fn encode<'t, S: Storage, PE>(
    model: &mut Model<S>,
    text: &str,
    tokens: &'t mut [u32],
    bpe: &mut [u32],
) -> Result<&'t [u32], Failure<S::Error, PE>> {
    let max = tokens.len();
    match model.encode(text.as_bytes(), bpe, tokens) {
        Ok(count) => Ok(tokens.get(..count).unwrap_or_default()),
        Err(Error::BufferTooSmall { what: "token buffer", .. }) => {
            Err(Failure::TextTooLong { max })
        }
        Err(Error::BufferTooSmall { what: "BPE scratch words", .. }) => Err(Failure::PieceTooLong),
        Err(e) => Err(e.into()),
    }
}

/// The largest prompt batch whose workspace fits, or why none does.
fn workspace_spec<S: Storage, PE>(
    model: &Model<S>,
    words: usize,
    prompt: usize,
    request: &Request<'_>,
) -> Result<WorkspaceSpec, Failure<S::Error, PE>> {
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
