//! One prompt's generation: picoGPT's greedy loop over core, printing what `host-tools run`
//! prints for each step, then board-independent statistics for the board to report.

use core::fmt::Write;

use picogpt_core::speculate::{self, Context, DraftSpec, MAX_SPECULATE};
use picogpt_core::{Error, Model, Storage, TopK, Workers};

use crate::budget::{Memory, Split, split, useful_draft};
use crate::failure::Failure;
use crate::kv::{Spill, SpillStorageError};
use crate::meter::Metered;
use crate::options::activations_name;
use crate::print;
use crate::prompt::Input;
use crate::request::{Clock, MAX_GENERATED, Request, Stats};

/// The failure of a generation over `S` with spill storage from `P`.
pub type GenerateFailure<S, P> = Failure<<S as Storage>::Error, SpillStorageError<P>>;

/// Generates after `request.prompt`, printing to `out`: `model:`, `prompt:` (the ids of a
/// text prompt), `workspace:`, `kv:` and `speculate:` lines, then for each step `step i:
/// token id ('text')`, the three candidate lines (core's `write_candidate`) and, with
/// `bits`, `bits: 0x… 0x… 0x…` (each logit's f32 bits); then `generated: ids`, the text and,
/// when a pass verified a draft, the passes line. From the first step line on, the lines
/// (`bits:` aside) are the ones `host-tools run` prints.
///
/// As on the host, each pass after the prompt's runs the last token and a prompt-lookup
/// draft of up to `request.speculate` tokens ([`picogpt_core::speculate`]) and yields the
/// tokens the model agrees with: the same tokens as one pass per token, in fewer passes.
/// Every matrix's rows are split between `workers` (the same bits for any count).
///
/// `memory.ram` is split for this request ([`crate::budget::split`]): the workspace for the
/// largest useful prompt batch (widened to hold a draft), the KV cache in the rest; positions
/// beyond what it holds go to storage from `spill`, opened only then.
pub fn generate<S: Storage + Metered, P: Spill, W: Write, C: Clock>(
    model: &mut Model<S>,
    memory: Memory<'_>,
    spill: &mut P,
    request: &Request<'_>,
    out: &mut W,
    clock: &mut C,
    workers: &mut dyn Workers,
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
    let Memory { ram, tokens, bpe } = memory;
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
    let Split { spec, speculate, workspace, mut kv, placement, kv_ram } =
        split(model.layout(), ram, prompt.len(), needed, request, spill)?;
    let mut ws = model.workspace(&spec, workspace)?;
    writeln!(
        out,
        "workspace: {} bytes (batch {}, {}-byte reads, {} activations)",
        model.workspace_bytes(&spec),
        spec.batch,
        spec.chunk_bytes,
        activations_name(spec.activations),
    )?;
    print::kv(out, request.kv, &placement, kv_ram, spill)?;
    print::speculate(out, request.speculate, useful_draft(request), speculate, spec.batch)?;
    let mut stats = Stats { batch: spec.batch, ..Stats::default() };
    let mut generated = heapless::Vec::<u32, MAX_GENERATED>::new();
    let mut input = [0u32; MAX_SPECULATE + 1];
    let mut ended = false;
    while generated.len() < n && !ended {
        let step = generated.len();
        model.set_verify(request.verify && step == 0);
        let mut tops: [TopK<3>; MAX_SPECULATE + 1] = core::array::from_fn(|_| TopK::new());
        let (t0, b0, m0) = (clock.now(), model.bytes_read(), model.storage().traffic());
        let drafted = match generated.last() {
            None => {
                model.forward_with(&mut ws, &mut kv, prompt, 0, &mut tops[0], workers)?;
                0
            }
            Some(&last) => {
                // Never past -n: the pass yields up to drafted + 1 tokens.
                let room = (n - step - 1).min(speculate);
                let context = Context { prompt, generated: &generated };
                let drafted =
                    speculate::pass_input(context, last, &DraftSpec::DEFAULT, room, &mut input);
                let (input, tops) = (&input[..=drafted], &mut tops[..=drafted]);
                let pos = prompt.len() + step - 1;
                model.forward_each_with(&mut ws, &mut kv, input, pos, tops, workers)?;
                drafted
            }
        };
        let ticks = clock.now().saturating_sub(t0);
        let bytes = model.bytes_read().saturating_sub(b0);
        let accepted = speculate::accepted(&tops[..=drafted], &input[1..=drafted]);
        stats.passes.count(drafted, accepted, step == 0);
        for top in &tops[..=accepted] {
            // The vocabulary is never empty (core checks the config), so there is a best token.
            let token = top.argmax().unwrap_or(0);
            print::step(model, out, generated.len() + 1, token, &top.candidates(), request.bits)?;
            // Cannot fail: at most n ≤ MAX_GENERATED tokens are pushed.
            let _ = generated.push(token);
            ended = Some(token) == end_of_text;
            if ended {
                break;
            }
        }
        // The bus's traffic counts the steps' lines too (their tokens' text is on the card).
        let traffic = model.storage().traffic() - m0;
        if step == 0 {
            (stats.prompt_ticks, stats.prompt_bytes, stats.prompt_traffic) =
                (ticks, bytes, traffic);
        } else {
            stats.token_ticks += ticks;
            stats.token_bytes += bytes;
            stats.token_traffic = stats.token_traffic + traffic;
        }
    }
    stats.steps = generated.len();
    print::finish(model, out, &generated, end_of_text)?;
    print::passes(out, &stats.passes, generated.len())?;
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
