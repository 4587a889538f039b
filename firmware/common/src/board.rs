//! What a board with a console does with a request: generate from a pack, spilling KV
//! positions beyond its RAM to storage when it has some, and print the timing lines.

use core::convert::Infallible;
use core::fmt::Write;

#[cfg(doc)]
use picogpt_core::OneWorker;
#[cfg(doc)]
use picogpt_core::SliceStorage;
use picogpt_core::format::MAGIC;
use picogpt_core::{Model, Storage, Workers};

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
    /// What each matrix's rows are split between: [`OneWorker`], or the Pico 2's two cores.
    pub workers: &'m mut dyn Workers,
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
    let (out, clock) = (&mut board.out, &mut board.clock);
    generate(model, memory, spill, &request, out, clock, &mut *board.workers)
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

/// Whether `storage` begins like a pack (erased flash does not).
pub fn holds_pack<F: Storage>(storage: &mut F) -> bool {
    let mut magic = [0u8; 4];
    storage.read_at(0, &mut magic).is_ok_and(|n| n == magic.len()) && is_pack(&magic)
}

/// Answers from a pack in the board's flash (the Pico 2's XIP window as a [`SliceStorage`],
/// the ESP32-C6's partition read through the ROM): no storage to spill KV positions to, so
/// the context must fit the RAM.
pub fn answer_from_flash<F: Storage + Metered, W: Write, C: Clock>(
    flash: F,
    options: &Options<'_>,
    board: &mut Board<'_, W, C>,
) -> Result<Stats, Failure<F::Error, Infallible>> {
    let mut model = Model::open(flash)?;
    let mut spill =
        NoSpill { hint: "shorten the prompt or -n (a KV.BIN on an SD card holds more)" };
    answer(&mut model, options, &mut spill, board)
}
