//! What the SD driver needs from an SPI bus beyond embedded-hal's `SpiBus`: a clock it can
//! set, and runs of bytes clocked in while the CPU does something else.

use embedded_hal::spi::SpiBus;

/// An SPI bus an SD card hangs on.
///
/// A run is a read of `len` bytes with `0xFF` sent out (what a card expects while it sends
/// data). A bus with DMA starts the transfer in [`Self::start_run`] and returns at once, so
/// the CPU computes while the bytes come in; a bus without DMA may do the whole transfer in
/// either call. The bytes live in the bus's own buffer until the next run starts.
pub trait SdBus: SpiBus<u8> {
    /// Sets the clock to at most `hz`; returns the clock the bus runs at.
    fn set_clock(&mut self, hz: u32) -> Result<u32, Self::Error>;

    /// Most bytes one run may take.
    fn run_capacity(&self) -> usize;

    /// Starts clocking in `len` bytes (at most [`Self::run_capacity`]), sending `0xFF`.
    fn start_run(&mut self, len: usize) -> Result<(), Self::Error>;

    /// Waits until the run started last is in; lends its bytes.
    fn finish_run(&mut self) -> Result<&[u8], Self::Error>;
}

impl<T: SdBus + ?Sized> SdBus for &mut T {
    fn set_clock(&mut self, hz: u32) -> Result<u32, Self::Error> {
        (**self).set_clock(hz)
    }

    fn run_capacity(&self) -> usize {
        (**self).run_capacity()
    }

    fn start_run(&mut self, len: usize) -> Result<(), Self::Error> {
        (**self).start_run(len)
    }

    fn finish_run(&mut self) -> Result<&[u8], Self::Error> {
        (**self).finish_run()
    }
}
