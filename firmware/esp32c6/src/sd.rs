//! The SD card on SPI2: GPIO6 SCK, GPIO7 MOSI, GPIO2 MISO, GPIO18 CS.

use embedded_hal_bus::spi::ExclusiveDevice;
use embedded_sdmmc::{SdCard, SdCardError};
use esp_hal::Blocking;
use esp_hal::delay::Delay;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::peripherals::{GPIO2, GPIO6, GPIO7, GPIO18, SPI2};
use esp_hal::spi::master::{Config, Spi};
use esp_hal::time::Rate;

/// SPI clock while the card starts up (the SD spec's identification limit).
const INIT: Rate = Rate::from_khz(400);
/// SPI clock for reading (APB 80 MHz / 4; SD cards take up to 25 MHz in SPI mode).
const READ: Rate = Rate::from_mhz(20);

/// The card behind SPI2.
pub type Card = SdCard<ExclusiveDevice<Spi<'static, Blocking>, Output<'static>, Delay>, Delay>;

/// Sets up SPI2 and the card's chip select; the card itself starts on first use.
pub fn card(
    spi: SPI2<'static>,
    sck: GPIO6<'static>,
    mosi: GPIO7<'static>,
    miso: GPIO2<'static>,
    cs: GPIO18<'static>,
) -> Option<Card> {
    let bus = Spi::new(spi, Config::default().with_frequency(INIT))
        .ok()?
        .with_sck(sck)
        .with_mosi(mosi)
        .with_miso(miso);
    let cs = Output::new(cs, Level::High, OutputConfig::default());
    let device = ExclusiveDevice::new(bus, cs, Delay::new()).ok()?;
    Some(SdCard::new(device, Delay::new()))
}

/// Starts (or restarts: the card may have been swapped) the card slowly, then speeds up;
/// returns its size in bytes.
pub fn restart(card: &Card) -> Result<u64, SdCardError> {
    set_clock(card, INIT)?;
    card.mark_card_uninit();
    let bytes = card.num_bytes()?;
    set_clock(card, READ)?;
    Ok(bytes)
}

/// Reclocks the bus (both rates are within what SPI2 can make).
fn set_clock(card: &Card, rate: Rate) -> Result<(), SdCardError> {
    let config = Config::default().with_frequency(rate);
    card.spi(|device| device.bus_mut().apply_config(&config)).map_err(|_| SdCardError::Transport)
}
