//! The console: the SoC's UART0 (SiFive UART at 0x1001_0000), which QEMU's `-serial stdio`
//! connects to its standard output.

use core::fmt;
use core::ptr::{read_volatile, write_volatile};

/// The UART's registers.
const BASE: usize = 0x1001_0000;
/// Transmit data: writing queues a byte; bit 31 reads set while the FIFO is full.
const TXDATA: usize = BASE;
/// Transmit control: bit 0 enables the transmitter.
const TXCTRL: usize = BASE + 0x08;
/// TXDATA's full flag.
const FULL: u32 = 1 << 31;

/// UART0, transmit side.
pub struct Uart {
    _private: (),
}

impl Uart {
    /// Enables the transmitter.
    pub fn new() -> Self {
        // SAFETY: TXCTRL is the UART's transmit control register; nothing else drives it.
        unsafe { write_volatile(TXCTRL as *mut u32, 1) };
        Self { _private: () }
    }

    fn put(&mut self, byte: u8) {
        // SAFETY: TXDATA is the UART's transmit register: a read tells whether its FIFO is
        // full, a write queues a byte.
        unsafe {
            while read_volatile(TXDATA as *const u32) & FULL != 0 {}
            write_volatile(TXDATA as *mut u32, u32::from(byte));
        }
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(|b| self.put(b));
        Ok(())
    }
}
