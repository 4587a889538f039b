//! Core 1: waits for a typed line, answers it from the pack on the SD card (or, without a
//! card, from a pack in flash), prints `> `. Its state lives in a static, so that after a
//! fault ([`crate::fault`]) core 1 can start serving again on a fresh stack.

use core::fmt::Write;
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_time::Instant;
use picogpt_board::board::Board;
use picogpt_board::sd::{Windows, answer_line};
use picogpt_board::{Clock, Memory, Options};
use picogpt_core::{Activations, KvFormat, OneWorker, SliceStorage, Workers};

use crate::bus::{self, Card};
use crate::flash;
use crate::link::{Console, LINES};
use crate::ram::CardRam;
use crate::share;

/// Tokens generated when the line does not say: with picoGPT's 10-token prompt, one prompt
/// pass and seven more (longer contexts spill to `KV.BIN` on the card).
const DEFAULT_TOKENS: usize = 8;

/// What core 1 serves with.
pub struct Core1 {
    /// The SD card.
    pub card: Card,
    /// The arena and the prompt buffers.
    pub memory: Memory<'static>,
    /// The card's windows.
    pub buffers: CardRam,
}

/// Core 1's state, written once by core 0 before core 1 starts.
static mut CORE1: MaybeUninit<Core1> = MaybeUninit::uninit();

/// Whether [`install`] has run.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Stores core 1's state (core 0, once, before spawning core 1); false if already done.
pub fn install(state: Core1) -> bool {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return false;
    }
    // SAFETY: INSTALLED makes this the only write; core 1 is not running yet.
    unsafe { (*addr_of_mut!(CORE1)).write(state) };
    true
}

/// Microseconds: embassy-time's ticks on the RP2350.
struct Micros;

impl Clock for Micros {
    fn now(&mut self) -> u64 {
        Instant::now().as_micros()
    }
}

/// Core 1's entry (and re-entry after a fault): serves lines forever.
pub fn serve() -> ! {
    if !INSTALLED.load(Ordering::Acquire) {
        loop {
            cortex_m::asm::wfe();
        }
    }
    // SAFETY: only core 1 runs this, and one borrow lives at a time: serve() is entered once
    // at start-up, and again only from the fault handler, which has thrown the previous
    // call's frames (and so its borrow) away with the stack they were on.
    let state = unsafe { (*addr_of_mut!(CORE1)).assume_init_mut() };
    let Core1 { card, memory, buffers } = state;
    // Both cores compute rows; on one alone if the pair was somehow lent already.
    let (mut pair, mut one) = (share::workers(), OneWorker);
    let workers: &mut dyn Workers = match pair.as_mut() {
        Some(pair) => pair,
        None => &mut one,
    };
    let mut board = Board {
        memory: memory.reborrow(),
        out: Console,
        clock: Micros,
        ticks_per_ms: 1000,
        defaults: Options::new(DEFAULT_TOKENS, KvFormat::Int8, Activations::Int16),
        workers,
    };
    loop {
        let line = embassy_futures::block_on(LINES.receive());
        let windows = Windows { pack: &mut *buffers.pack, kv: &mut *buffers.kv };
        let flash = Some(SliceStorage::new(flash::region()));
        answer_line(&line, card, bus::restart, windows, flash, &mut board);
        let _ = write!(board.out, "> ");
    }
}

/// After a fault: takes the row-sharing slot back from the lost call, reports the fault in
/// one line and serves again.
pub fn resume(report: impl FnOnce(&mut Console) -> core::fmt::Result) -> ! {
    share::recover();
    let mut console = Console;
    let _ = report(&mut console);
    let _ = write!(console, "> ");
    serve()
}
