//! The SD card on SPI2 (GPIO6 SCK, GPIO7 MOSI, GPIO2 MISO, GPIO18 CS), driven by common's SD
//! driver: commands through esp-hal's SPI (in place, by DMA when long), and each window of
//! blocks as one DMA run on DMA channel 0 — a looping descriptor sends `0xFF` while the
//! receive descriptors fill the run buffer — so the core computes while the next 16 KiB come
//! in.

use embedded_hal::spi::{ErrorKind, ErrorType, SpiBus};
use esp_hal::Blocking;
use esp_hal::delay::Delay;
use esp_hal::dma::{DmaLoopBuf, DmaRxBuf};
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::peripherals::{DMA_CH0, GPIO2, GPIO6, GPIO7, GPIO18, SPI2};
use esp_hal::spi::master::{Config, Spi, SpiDma, SpiDmaTransfer};
use esp_hal::time::Rate;
use esp_hal::{dma_loop_buffer, dma_rx_buffer};
use picogpt_board::sdspi::{CardError, FRAME_BYTES, INIT_HZ, SdBus, SdCard};

/// SPI clock for reading (APB 80 MHz / 4; SD cards take up to 25 MHz in SPI mode).
pub const READ_HZ: u32 = 20_000_000;

/// Blocks one DMA run (and one multi-block read) moves: the pack's window.
pub const WINDOW_BLOCKS: usize = 32;

/// Bytes of the run buffer: a window's blocks as the card sends them.
const RUN_BYTES: usize = WINDOW_BLOCKS * FRAME_BYTES;

/// The card behind SPI2.
pub type Card = SdCard<DmaSpi, Output<'static>, Delay>;

/// A run in flight.
type Running = SpiDmaTransfer<'static, Blocking, (DmaRxBuf, DmaLoopBuf)>;

/// SPI2, its DMA channel and buffers.
struct Idle {
    spi: SpiDma<'static, Blocking>,
    rx: DmaRxBuf,
    ones: DmaLoopBuf,
}

/// SPI2 with DMA runs.
pub struct DmaSpi {
    idle: Option<Idle>,
    running: Option<Running>,
    /// Bytes of the last run.
    len: usize,
}

/// What went wrong on SPI2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// esp-hal's SPI or DMA driver failed.
    Spi,
    /// A failed transfer took the driver with it (until the next reset).
    Lost,
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
    /// The idle driver, waiting for a run in flight first.
    fn idle(&mut self) -> Result<&mut Idle, BusError> {
        if let Some(running) = self.running.take() {
            let (spi, (rx, ones)) = running.wait();
            self.idle = Some(Idle { spi, rx, ones });
        }
        self.idle.as_mut().ok_or(BusError::Lost)
    }

    fn spi(&mut self) -> Result<&mut SpiDma<'static, Blocking>, BusError> {
        Ok(&mut self.idle()?.spi)
    }
}

impl SpiBus<u8> for DmaSpi {
    fn read(&mut self, words: &mut [u8]) -> Result<(), BusError> {
        words.fill(0xff);
        self.transfer_in_place(words)
    }

    fn write(&mut self, words: &[u8]) -> Result<(), BusError> {
        self.spi()?.write(words).map_err(|_| BusError::Spi)
    }

    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), BusError> {
        self.spi()?.transfer(read, write).map_err(|_| BusError::Spi)
    }

    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), BusError> {
        self.spi()?.transfer_in_place(words).map_err(|_| BusError::Spi)
    }

    fn flush(&mut self) -> Result<(), BusError> {
        self.idle().map(|_| ())
    }
}

impl SdBus for DmaSpi {
    fn set_clock(&mut self, hz: u32) -> Result<u32, BusError> {
        let config = Config::default().with_frequency(Rate::from_hz(hz));
        self.spi()?.apply_config(&config).map_err(|_| BusError::Spi)?;
        Ok(hz)
    }

    fn run_capacity(&self) -> usize {
        RUN_BYTES
    }

    fn start_run(&mut self, len: usize) -> Result<(), BusError> {
        let len = len.min(RUN_BYTES);
        self.idle()?;
        let Idle { spi, rx, ones } = self.idle.take().ok_or(BusError::Lost)?;
        match spi.transfer_buffers(len, rx, len, ones) {
            Ok(running) => {
                (self.running, self.len) = (Some(running), len);
                Ok(())
            }
            Err((_, spi, rx, ones)) => {
                self.idle = Some(Idle { spi, rx, ones });
                Err(BusError::Spi)
            }
        }
    }

    fn finish_run(&mut self) -> Result<&[u8], BusError> {
        let len = self.len;
        let idle = self.idle()?;
        Ok(idle.rx.as_slice().get(..len).unwrap_or_default())
    }
}

/// Sets up SPI2 with DMA channel 0 and the card's chip select; the card itself starts on
/// first use.
pub fn card(
    spi: SPI2<'static>,
    dma: DMA_CH0<'static>,
    pins: (GPIO6<'static>, GPIO7<'static>, GPIO2<'static>, GPIO18<'static>),
) -> Option<Card> {
    let (sck, mosi, miso, cs) = pins;
    let spi = Spi::new(spi, Config::default().with_frequency(Rate::from_hz(INIT_HZ)))
        .ok()?
        .with_sck(sck)
        .with_mosi(mosi)
        .with_miso(miso)
        .with_dma(dma);
    let rx = dma_rx_buffer!(RUN_BYTES).ok()?;
    let mut ones = dma_loop_buffer!(64);
    ones.fill(0xff);
    let bus = DmaSpi { idle: Some(Idle { spi, rx, ones }), running: None, len: 0 };
    let cs = Output::new(cs, Level::High, OutputConfig::default());
    Some(SdCard::new(bus, cs, Delay::new(), READ_HZ))
}

/// Starts (or restarts: the card may have been swapped) the card; returns its size in bytes.
pub fn restart(card: &mut Card) -> Result<u64, CardError> {
    card.init()
}
