//! The SD card on SPI0 (GP16 MISO, GP17 CS, GP18 SCK, GP19 MOSI), driven by common's SD
//! driver: commands byte by byte through embassy's blocking SPI, and each window of blocks
//! as one DMA run — DMA channel 0 feeds `0xFF` bytes to the transmit FIFO, channel 1 moves the
//! received ones into the run buffer, both paced by SPI0's DREQs — so core 1 computes while
//! the next 16 KiB come in.

use core::sync::atomic::{Ordering, compiler_fence};

use embassy_rp::Peri;
use embassy_rp::dma::ChannelInstance;
use embassy_rp::gpio::{Level, Output};
use embassy_rp::pac;
use embassy_rp::pac::dma::vals::{DataSize, TransCountMode, TreqSel};
use embassy_rp::peripherals::{DMA_CH0, DMA_CH1, PIN_16, PIN_17, PIN_18, PIN_19, SPI0};
use embassy_rp::spi::{self, Blocking, Spi};
use embassy_time::Delay;
use embedded_hal::spi::{ErrorKind, ErrorType, SpiBus};
use picogpt_board::sdspi::{CardError, SdBus, SdCard};

/// SPI clock for reading: the most SD cards take in SPI mode.
pub const READ_HZ: u32 = 25_000_000;

/// The card behind SPI0.
pub type Card = SdCard<DmaSpi, Output<'static>, Delay>;

/// The byte the transmit channel sends over and over (read in place, not incremented).
static FF: u8 = 0xff;

/// SPI0 with two DMA channels for background runs.
pub struct DmaSpi {
    spi: Spi<'static, SPI0, Blocking>,
    tx: u8,
    rx: u8,
    run: &'static mut [u8],
    /// Bytes of the run in flight (or done), if one was started.
    pending: Option<usize>,
    _channels: (Peri<'static, DMA_CH0>, Peri<'static, DMA_CH1>),
}

/// What went wrong with SPI0 or its DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// A DMA channel reported a bus error.
    Dma,
}

impl embedded_hal::spi::Error for BusError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for DmaSpi {
    type Error = BusError;
}

impl DmaSpi {
    /// Programs and starts channel `ch`: `count` bytes from `from` to `to`, paced by `treq`.
    fn start(ch: u8, from: u32, to: u32, count: usize, incr_write: bool, treq: TreqSel) {
        let regs = pac::DMA.ch(ch as usize);
        regs.read_addr().write_value(from);
        regs.write_addr().write_value(to);
        regs.trans_count().write(|w| {
            w.set_mode(TransCountMode::NORMAL);
            w.set_count(count as u32);
        });
        compiler_fence(Ordering::SeqCst);
        regs.ctrl_trig().write(|w| {
            w.set_treq_sel(treq);
            w.set_data_size(DataSize::SIZE_BYTE);
            w.set_incr_read(false);
            w.set_incr_write(incr_write);
            w.set_chain_to(ch);
            w.set_irq_quiet(true);
            w.set_en(true);
        });
    }
}

impl SpiBus<u8> for DmaSpi {
    fn read(&mut self, words: &mut [u8]) -> Result<(), BusError> {
        words.fill(0xff);
        self.transfer_in_place(words)
    }

    fn write(&mut self, words: &[u8]) -> Result<(), BusError> {
        self.spi.blocking_write(words).map_err(|_| BusError::Dma)
    }

    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), BusError> {
        self.spi.blocking_transfer(read, write).map_err(|_| BusError::Dma)
    }

    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), BusError> {
        self.spi.blocking_transfer_in_place(words).map_err(|_| BusError::Dma)
    }

    fn flush(&mut self) -> Result<(), BusError> {
        self.spi.flush().map_err(|_| BusError::Dma)
    }
}

impl SdBus for DmaSpi {
    fn set_clock(&mut self, hz: u32) -> Result<u32, BusError> {
        self.spi.set_frequency(hz);
        Ok(hz)
    }

    fn run_capacity(&self) -> usize {
        self.run.len()
    }

    fn start_run(&mut self, len: usize) -> Result<(), BusError> {
        let len = len.min(self.run.len());
        let dr = pac::SPI0.dr().as_ptr() as u32;
        // The receive channel first, so no byte the transmit channel clocks is missed.
        Self::start(self.rx, dr, self.run.as_mut_ptr() as u32, len, true, TreqSel::SPI0_RX);
        Self::start(self.tx, core::ptr::addr_of!(FF) as u32, dr, len, false, TreqSel::SPI0_TX);
        self.pending = Some(len);
        Ok(())
    }

    fn finish_run(&mut self) -> Result<&[u8], BusError> {
        let len = self.pending.take().unwrap_or(0);
        let (tx, rx) = (pac::DMA.ch(self.tx as usize), pac::DMA.ch(self.rx as usize));
        while tx.ctrl_trig().read().busy() || rx.ctrl_trig().read().busy() {
            core::hint::spin_loop();
        }
        compiler_fence(Ordering::SeqCst);
        if tx.ctrl_trig().read().ahb_error() || rx.ctrl_trig().read().ahb_error() {
            return Err(BusError::Dma);
        }
        Ok(self.run.get(..len).unwrap_or_default())
    }
}

/// Sets up SPI0, its DMA channels and the card's chip select; the card itself starts on
/// first use. `run` is the DMA buffer of a window's blocks as the card sends them.
pub fn card(
    spi: Peri<'static, SPI0>,
    pins: (
        Peri<'static, PIN_18>,
        Peri<'static, PIN_19>,
        Peri<'static, PIN_16>,
        Peri<'static, PIN_17>,
    ),
    channels: (Peri<'static, DMA_CH0>, Peri<'static, DMA_CH1>),
    run: &'static mut [u8],
) -> Card {
    let (sck, mosi, miso, cs) = pins;
    let mut config = spi::Config::default();
    config.frequency = picogpt_board::sdspi::INIT_HZ;
    let bus = DmaSpi {
        spi: Spi::new_blocking(spi, sck, mosi, miso, config),
        tx: DMA_CH0::number(),
        rx: DMA_CH1::number(),
        run,
        pending: None,
        _channels: channels,
    };
    SdCard::new(bus, Output::new(cs, Level::High), Delay, READ_HZ)
}

/// Starts (or restarts: the card may have been swapped) the card; returns its size in bytes.
pub fn restart(card: &mut Card) -> Result<u64, CardError> {
    let bytes = card.init()?;
    defmt::info!("SD card: {} bytes", bytes);
    Ok(bytes)
}
