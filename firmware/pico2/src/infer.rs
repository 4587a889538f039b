//! Core 1: waits for a typed line, answers it from the pack on the SD card (or, without a
//! card, from a pack in flash), prints `> `.

use core::fmt::Write;

use embassy_time::Instant;
use picogpt_board::board::Board;
use picogpt_board::sd::answer_line;
use picogpt_board::{Clock, Memory, Options};
use picogpt_core::{Activations, KvFormat};

use crate::bus::{self, Card};
use crate::flash;
use crate::link::{Console, LINES};

/// Tokens generated when the line does not say: with the 10-token default prompt, well
/// within the 23 positions an int8 cache of GPT-2 124M gets in RAM here (longer contexts
/// spill to `KV.BIN` on the card).
const DEFAULT_TOKENS: usize = 8;

/// Microseconds: embassy-time's ticks on the RP2350.
struct Micros;

impl Clock for Micros {
    fn now(&mut self) -> u64 {
        Instant::now().as_micros()
    }
}

/// Serves lines forever.
pub fn serve(mut card: Card, ram: Memory<'static>) -> ! {
    let mut board = Board {
        memory: ram,
        out: Console,
        clock: Micros,
        ticks_per_ms: 1000,
        defaults: Options::new(DEFAULT_TOKENS, KvFormat::Int8, Activations::F32),
    };
    loop {
        let line = embassy_futures::block_on(LINES.receive());
        card = answer_line(&line, card, bus::restart, Some(flash::region()), &mut board);
        let _ = write!(board.out, "> ");
    }
}
