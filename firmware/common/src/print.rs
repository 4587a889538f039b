//! The lines a generation prints, as `host-tools run` prints them: the model, the memory,
//! each step with its three candidates, the generated ids and text, the timing.

use core::fmt::{self, Write};

use picogpt_core::display::{PyRepr, write_candidate};
use picogpt_core::format::MAX_TOKEN_BYTES;
use picogpt_core::utf8::Utf8Stream;
use picogpt_core::{Candidate, KvFormat, Model, Passes, Storage};

use crate::budget::Placement;
use crate::failure::Failure;
use crate::kv::Spill;
use crate::meter::Traffic;
use crate::options::kv_name;
use crate::request::Stats;
use crate::text::{TEXT_BYTES, lossy};

/// `model: 12 layers, n_embd 768, 12 heads, n_ctx 1024, vocab 50257, int8 (blocks of 32)`.
pub fn model<S: Storage, W: Write>(model: &Model<S>, out: &mut W) -> fmt::Result {
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

/// `kv: ram int8, 23 positions of 19584 bytes (466172 bytes of RAM)`, and, when positions
/// spill, ` + sd 41 positions (KV.BIN)`.
pub fn kv<W: Write, P: Spill>(
    out: &mut W,
    format: KvFormat,
    placement: &Placement,
    ram_bytes: usize,
    spill: &P,
) -> fmt::Result {
    write!(
        out,
        "kv: ram {}, {} positions of {} bytes ({ram_bytes} bytes of RAM)",
        kv_name(format),
        placement.ram,
        placement.position_bytes,
    )?;
    if placement.spilled > 0 {
        let (medium, spilled, name) = (spill.medium(), placement.spilled, spill.name());
        write!(out, " + {medium} {spilled} positions ({name})")?;
    }
    writeln!(out)
}

/// `speculate: 4 draft tokens per pass`, or, when the RAM cut the `useful` draft (what was
/// `asked`, bounded by `-n`) to `given`, `speculate: 2 draft tokens per pass (4 asked; the
/// RAM holds a batch of 3)`; nothing when no draft is of use.
pub fn speculate<W: Write>(
    out: &mut W,
    asked: usize,
    useful: usize,
    given: usize,
    batch: usize,
) -> fmt::Result {
    if useful == 0 {
        return Ok(());
    }
    write!(out, "speculate: {given} draft tokens per pass")?;
    if given < useful {
        write!(out, " ({asked} asked; the RAM holds a batch of {batch})")?;
    }
    writeln!(out)
}

/// The passes line `host-tools run` prints after the text when a pass verified a draft:
/// `9 weight passes for 24 tokens: 15 of 20 drafted tokens accepted`.
pub fn passes<W: Write>(out: &mut W, passes: &Passes, tokens: usize) -> fmt::Result {
    if passes.drafts == 0 {
        return Ok(());
    }
    passes.write_summary(out, tokens)?;
    writeln!(out)
}

/// `prompt: 36235,39141,18765`: the ids a text prompt encoded to.
pub fn prompt<W: Write>(out: &mut W, ids: &[u32]) -> fmt::Result {
    write!(out, "prompt: ")?;
    ids_list(out, ids)?;
    writeln!(out)
}

/// `1,2,3`.
fn ids_list<W: Write>(out: &mut W, ids: &[u32]) -> fmt::Result {
    for (i, id) in ids.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        write!(out, "{comma}{id}")?;
    }
    Ok(())
}

/// One step's lines, exactly as `host-tools run` prints them.
pub fn step<S: Storage, W: Write, PE>(
    model: &mut Model<S>,
    out: &mut W,
    index: usize,
    token: u32,
    candidates: &[Candidate],
    bits: bool,
) -> Result<(), Failure<S::Error, PE>> {
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
pub fn finish<S: Storage, W: Write, PE>(
    model: &mut Model<S>,
    out: &mut W,
    generated: &[u32],
    end_of_text: Option<u32>,
) -> Result<(), Failure<S::Error, PE>> {
    write!(out, "generated: ")?;
    ids_list(out, generated)?;
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

/// The timing lines of a board whose [`crate::request::Clock`] ticks `ticks_per_ms` times a
/// millisecond: `prompt pass: 1234.5 ms (batch 1)`, then, after more than one step,
/// `ms per token: 678.9`, `bytes read per token: 132142576` and, on a board with a card,
/// [`traffic`]'s line; `clock` qualifies the milliseconds (`emulated`), or is empty.
pub fn write_timing<W: Write>(
    out: &mut W,
    stats: &Stats,
    ticks_per_ms: u64,
    clock: &str,
) -> fmt::Result {
    let sep = if clock.is_empty() { "" } else { " " };
    let tenths = |ticks: u64| ticks.saturating_mul(10) / ticks_per_ms.max(1);
    let pass = tenths(stats.prompt_ticks);
    let batch = stats.batch;
    writeln!(out, "prompt pass: {}.{} ms{sep}{clock} (batch {batch})", pass / 10, pass % 10)?;
    if let (Some(ticks), Some(bytes)) = (stats.ticks_per_token(), stats.bytes_per_token()) {
        let token = tenths(ticks);
        writeln!(out, "ms per token: {}.{}{sep}{clock}", token / 10, token % 10)?;
        writeln!(out, "bytes read per token: {bytes}")?;
    }
    traffic(out, stats)
}

/// `sd per token: 5 commands (2 CMD18, 0 CMD17, 1 write), 3833344 bytes in 7487 blocks read,
/// 3856789 bytes on the bus`: the mean over the passes after the first, when the storage's bus
/// carried anything (an SD card's).
pub fn traffic<W: Write>(out: &mut W, stats: &Stats) -> fmt::Result {
    let Some(t) = stats.traffic_per_token().filter(|t| *t != Traffic::default()) else {
        return Ok(());
    };
    let writes = if t.writes == 1 { "write" } else { "writes" };
    writeln!(
        out,
        "sd per token: {} commands ({} CMD18, {} CMD17, {} {writes}), {} bytes in {} blocks read, \
         {} bytes on the bus",
        t.commands,
        t.multi_reads,
        t.single_reads,
        t.writes,
        t.blocks_read * 512,
        t.blocks_read,
        t.bus_bytes
    )
}
