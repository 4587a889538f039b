//! The SD card on SPI0: GP16 MISO, GP17 CS, GP18 SCK, GP19 MOSI.

use embassy_rp::Peri;
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{PIN_16, PIN_17, PIN_18, PIN_19, SPI0};
use embassy_rp::spi::{self, Blocking, Spi};
use embassy_time::Delay;
use embedded_hal_bus::spi::ExclusiveDevice;
use embedded_sdmmc::{SdCard, SdCardError};

/// SPI clock while the card starts up (the SD spec's identification limit).
const INIT_HZ: u32 = 400_000;
/// SPI clock for reading: the most SD cards take in SPI mode.
const READ_HZ: u32 = 25_000_000;

/// The card behind SPI0.
pub type Card =
    SdCard<ExclusiveDevice<Spi<'static, SPI0, Blocking>, Output<'static>, Delay>, Delay>;

/// Sets up SPI0 and the card's chip select; the card itself starts on first use.
pub fn card(
    spi: Peri<'static, SPI0>,
    sck: Peri<'static, PIN_18>,
    mosi: Peri<'static, PIN_19>,
    miso: Peri<'static, PIN_16>,
    cs: Peri<'static, PIN_17>,
) -> Option<Card> {
    let mut config = spi::Config::default();
    config.frequency = INIT_HZ;
    let bus = Spi::new_blocking(spi, sck, mosi, miso, config);
    let device = ExclusiveDevice::new(bus, Output::new(cs, Level::High), Delay).ok()?;
    Some(SdCard::new(device, Delay))
}

/// Starts (or restarts: the card may have been swapped) the card slowly, then speeds up;
/// returns its size in bytes.
pub fn restart(card: &Card) -> Result<u64, SdCardError> {
    card.spi(|device| device.bus_mut().set_frequency(INIT_HZ));
    card.mark_card_uninit();
    let bytes = card.num_bytes()?;
    card.spi(|device| device.bus_mut().set_frequency(READ_HZ));
    defmt::info!("SD card: {} bytes", bytes);
    Ok(bytes)
}
