//! What a board with a console does with a request: generate from a pack, spilling KV
//! positions beyond its RAM to storage when it has some, and print the timing lines.

use core::convert::Infallible;
use core::fmt::Write;

use picogpt_core::format::MAGIC;
use picogpt_core::{Model, SliceStorage, Storage};

use crate::budget::Memory;
use crate::failure::Failure;
use crate::kv::{NoSpill, Spill};
use crate::meter::Metered;
use crate::options::Options;
use crate::print::write_timing;
use crate::request::{Clock, Stats};
use crate::session::{GenerateFailure, generate};
use crate::{CHUNK_BYTES, MAX_PROMPT};

/// What a board brings to answer a line.
pub struct Board<'m, W, C> {
    /// The RAM arena and the prompt buffers.
    pub memory: Memory<'m>,
    /// The console.
    pub out: W,
    /// The clock the timing lines are measured with.
    pub clock: C,
    /// Clock ticks per millisecond.
    pub ticks_per_ms: u64,
    /// Flags not given on the line (the board's `-n`, `--kv`, `--activations`).
    pub defaults: Options<'static>,
}

/// Generates what `options` ask from `model`, KV positions beyond the RAM going to `spill`,
/// printing the lines of [`generate`]; returns what it cost.
pub fn answer<S: Storage + Metered, P: Spill, W: Write, C: Clock>(
    model: &mut Model<S>,
    options: &Options<'_>,
    spill: &mut P,
    board: &mut Board<'_, W, C>,
) -> Result<Stats, GenerateFailure<S, P>> {
    let request = options.request(CHUNK_BYTES, MAX_PROMPT);
    let memory = board.memory.reborrow();
    generate(model, memory, spill, &request, &mut board.out, &mut board.clock)
}

impl<W: Write, C> Board<'_, W, C> {
    /// Prints the timing lines of `stats` in the board's clock.
    pub fn report(&mut self, stats: &Stats) {
        let _ = write_timing(&mut self.out, stats, self.ticks_per_ms, "");
    }
}

/// Whether `bytes` begin like a pack (its magic, `PGPT`).
pub fn is_pack(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Answers from a pack already in addressable memory (XIP flash, the ESP32-C6's mapped
/// partition): no storage to spill KV positions to, so the context must fit the RAM.
pub fn answer_from_memory<W: Write, C: Clock>(
    pack: &[u8],
    options: &Options<'_>,
    board: &mut Board<'_, W, C>,
) -> Result<Stats, Failure<Infallible>> {
    let mut model = Model::open(SliceStorage::new(pack))?;
    let mut spill =
        NoSpill { hint: "shorten the prompt or -n (a KV.BIN on an SD card holds more)" };
    answer(&mut model, options, &mut spill, board)
}
