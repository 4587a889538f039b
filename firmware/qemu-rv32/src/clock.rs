//! Time and instructions: the CLINT's machine timer (10 MHz on sifive_u), and the hart's
//! retired-instruction counter, exact under QEMU's `-icount shift=0`.

use core::cell::Cell;
use core::ptr::read_volatile;

use embedded_hal::delay::DelayNs;

/// The CLINT's `mtime`, low and high words.
const MTIME: usize = 0x0200_bff8;

/// `mtime` ticks per millisecond (sifive_u's timebase is 10 MHz).
pub const TICKS_PER_MS: u64 = 10_000;

/// Nanoseconds per `mtime` tick.
const NS_PER_TICK: u64 = 1_000_000 / TICKS_PER_MS;

/// The machine timer.
pub fn mtime() -> u64 {
    // SAFETY: the CLINT's mtime registers are read-only here; reading them has no effect.
    let read = |at: usize| unsafe { read_volatile(at as *const u32) };
    loop {
        let (hi, lo, again) = (read(MTIME + 4), read(MTIME), read(MTIME + 4));
        if hi == again {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// Instructions the hart has retired.
pub fn instructions() -> u64 {
    riscv::register::minstret::read64()
}

/// The board's clock for the timing lines: emulated time, or (with `--icount`) the
/// instructions the hart ran outside the SPI FIFO loops that move the card's bytes (what a
/// board's DMA does instead: the ESP32-C6 build reads the card by DMA).
pub struct Ticks<'w> {
    icount: bool,
    wire: &'w Cell<u64>,
}

impl<'w> Ticks<'w> {
    /// Counts instructions when `icount`, less those in `wire`; else `mtime` ticks.
    pub fn new(icount: bool, wire: &'w Cell<u64>) -> Self {
        Self { icount, wire }
    }
}

impl picogpt_board::Clock for Ticks<'_> {
    fn now(&mut self) -> u64 {
        if self.icount { instructions().saturating_sub(self.wire.get()) } else { mtime() }
    }
}

/// Busy waits on the machine timer.
pub struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let until = mtime() + u64::from(ns).div_ceil(NS_PER_TICK);
        while mtime() < until {}
    }
}
