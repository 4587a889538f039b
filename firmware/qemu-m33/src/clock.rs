//! Time from SysTick, extended to 64 bits by counting its wraps.
//!
//! QEMU clocks the AN505's SysTick from the 20 MHz system clock in virtual time. Under
//! `-icount shift=0` virtual time advances exactly 1 ns per guest instruction, so a tick is
//! [`NS_PER_TICK`] instructions; without it, virtual time follows the host's clock.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// SysTick's reload value: the counter's full 24 bits.
const RELOAD: u32 = 0x00ff_ffff;

/// Nanoseconds of virtual time per SysTick tick (the AN505 system clock's period; checked
/// under `-icount shift=0`: a loop of 20 M instructions takes 400,000 ticks).
pub const NS_PER_TICK: u64 = 50;

/// SysTick wraps so far.
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// A running SysTick.
pub struct Ticks {
    _syst: SYST,
}

impl Ticks {
    /// Starts SysTick from the core clock, wrapping every 2^24 ticks.
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // The counter reads 0 until its first tick loads the reload value; a reading taken
        // then would look like a full period.
        while SYST::get_current() == 0 {}
        Self { _syst: syst }
    }
}

impl picogpt_board::Clock for Ticks {
    fn now(&mut self) -> u64 {
        cortex_m::interrupt::free(|_| {
            let mut wraps = WRAPS.load(Ordering::Relaxed);
            let mut current = SYST::get_current();
            // A wrap whose interrupt has not run yet: count it, and read the new period.
            if SCB::is_pendst_pending() {
                wraps += 1;
                current = SYST::get_current();
            }
            (u64::from(wraps) << 24) | u64::from(RELOAD - current)
        })
    }
}
