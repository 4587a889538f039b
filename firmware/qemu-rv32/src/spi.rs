//! The SiFive SPI controller (QSPI2 at 0x1005_0000, where sifive_u wires QEMU's SD card)
//! behind embedded-hal's traits: [`SpiBus`] for the bytes, [`OutputPin`] for the chip
//! select, and picogpt's [`SdBus`] for the clock and background runs.
//!
//! The controller has 8-byte transmit and receive FIFOs and no DMA: a byte written to TXDATA
//! is shifted at once and its answer queued in RXDATA (dropped if that FIFO is full), so bytes
//! go out at most eight ahead of the answers read. A run is therefore clocked in full when it
//! finishes; on the ESP32-C6 the same run is a DMA transfer that overlaps the computation.
//! The instructions these FIFO loops take are added to `wire`, so the board's clock can leave
//! them out of `instructions per token`.

use core::cell::Cell;
use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use embedded_hal::digital::{self, OutputPin};
use embedded_hal::spi::{self, SpiBus};
use picogpt_board::sdspi::SdBus;

use crate::clock::instructions;

/// The controller's registers.
const BASE: usize = 0x1005_0000;
/// Serial clock divisor: f_sck = f_in / (2 × (div + 1)).
const SCKDIV: usize = 0x00;
/// Chip select mode: AUTO (0) releases it between frames, HOLD (2) keeps it asserted.
const CSMODE: usize = 0x18;
/// Transmit data: bit 31 reads set while the FIFO is full.
const TXDATA: usize = 0x48;
/// Receive data: bit 31 set while the FIFO is empty, else the byte in bits 7..0.
const RXDATA: usize = 0x4c;
/// Both flags.
const FLAG: u32 = 1 << 31;
/// FIFO depth.
const FIFO: usize = 8;
/// The controller's input clock (the FU540's tlclk, half the 1 GHz core clock).
const INPUT_HZ: u32 = 500_000_000;
/// The most an SD card takes in SPI mode.
const MAX_HZ: u32 = 25_000_000;

fn reg(offset: usize) -> *mut u32 {
    (BASE + offset) as *mut u32
}

/// The SPI controller the card is on.
pub struct SifiveSpi<'w> {
    /// Buffer of background runs.
    run: &'static mut [u8],
    /// Bytes of the run started last.
    pending: usize,
    /// Instructions spent moving bytes through the FIFOs.
    wire: &'w Cell<u64>,
}

impl<'w> SifiveSpi<'w> {
    /// The controller, with `run` for background runs and `wire` to count its FIFO loops in.
    pub fn new(run: &'static mut [u8], wire: &'w Cell<u64>) -> Self {
        Self { run, pending: 0, wire }
    }

    /// Exchanges `words` in place, at most a FIFO's depth ahead.
    fn exchange(&mut self, words: &mut [u8]) {
        let start = instructions();
        for chunk in words.chunks_mut(FIFO) {
            // SAFETY: TXDATA and RXDATA are the controller's FIFO registers; this driver is
            // their only user (it holds the card's bus), and a chunk fits both FIFOs.
            unsafe {
                for &byte in chunk.iter() {
                    while read_volatile(reg(TXDATA)) & FLAG != 0 {}
                    write_volatile(reg(TXDATA), u32::from(byte));
                }
                for slot in chunk.iter_mut() {
                    *slot = loop {
                        let rx = read_volatile(reg(RXDATA));
                        if rx & FLAG == 0 {
                            break rx as u8;
                        }
                    };
                }
            }
        }
        self.wire.set(self.wire.get() + instructions().saturating_sub(start));
    }
}

impl spi::ErrorType for SifiveSpi<'_> {
    type Error = Infallible;
}

impl SpiBus<u8> for SifiveSpi<'_> {
    fn read(&mut self, words: &mut [u8]) -> Result<(), Infallible> {
        words.fill(0xff);
        self.exchange(words);
        Ok(())
    }

    fn write(&mut self, words: &[u8]) -> Result<(), Infallible> {
        let mut chunk = [0u8; FIFO];
        for piece in words.chunks(FIFO) {
            let chunk = &mut chunk[..piece.len()];
            chunk.copy_from_slice(piece);
            self.exchange(chunk);
        }
        Ok(())
    }

    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), Infallible> {
        let mut chunk = [0u8; FIFO];
        let n = read.len().max(write.len());
        for at in (0..n).step_by(FIFO) {
            let len = (n - at).min(FIFO);
            for (i, b) in chunk[..len].iter_mut().enumerate() {
                *b = write.get(at + i).copied().unwrap_or(0xff);
            }
            self.exchange(&mut chunk[..len]);
            for (i, &b) in chunk[..len].iter().enumerate() {
                if let Some(r) = read.get_mut(at + i) {
                    *r = b;
                }
            }
        }
        Ok(())
    }

    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), Infallible> {
        self.exchange(words);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl SdBus for SifiveSpi<'_> {
    fn set_clock(&mut self, hz: u32) -> Result<u32, Infallible> {
        let hz = hz.clamp(1, MAX_HZ);
        let div = INPUT_HZ.div_ceil(2 * hz).saturating_sub(1);
        // SAFETY: SCKDIV is the controller's clock divisor; only this driver writes it.
        unsafe { write_volatile(reg(SCKDIV), div) };
        Ok(INPUT_HZ / (2 * (div + 1)))
    }

    fn run_capacity(&self) -> usize {
        self.run.len()
    }

    fn start_run(&mut self, len: usize) -> Result<(), Infallible> {
        self.pending = len.min(self.run.len());
        Ok(())
    }

    fn finish_run(&mut self) -> Result<&[u8], Infallible> {
        let len = core::mem::take(&mut self.pending);
        let run = core::mem::take(&mut self.run);
        run[..len].fill(0xff);
        self.exchange(&mut run[..len]);
        self.run = run;
        Ok(&self.run[..len])
    }
}

/// The card's chip select: the controller's CS0, held asserted or released.
pub struct ChipSelect;

impl digital::ErrorType for ChipSelect {
    type Error = Infallible;
}

impl OutputPin for ChipSelect {
    fn set_low(&mut self) -> Result<(), Infallible> {
        // SAFETY: CSMODE is the controller's chip-select mode register; HOLD asserts CS0.
        unsafe { write_volatile(reg(CSMODE), 2) };
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        // SAFETY: as above; AUTO leaves CS0 released between frames (QEMU: released).
        unsafe { write_volatile(reg(CSMODE), 0) };
        Ok(())
    }
}
