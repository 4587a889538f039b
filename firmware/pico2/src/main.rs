//! picoGPT on a Raspberry Pi Pico 2 (RP2350A: two Cortex-M33 at 150 MHz, 520 KiB SRAM),
//! its weights streamed from an SD card.
//!
//! Wiring: a 3.3 V micro-SD breakout on SPI0.
//!
//! ```text
//! Pico 2  GP16 (SPI0 RX)  <- card DO / MISO
//!         GP17 (GPIO)     -> card CS
//!         GP18 (SPI0 SCK) -> card CLK
//!         GP19 (SPI0 TX)  -> card DI / MOSI
//!         3V3, GND        -- card VCC, GND
//! ```
//!
//! The card is FAT32 with the pack in its root as `MODEL.PGP` (an 8.3 name):
//! `cp model-int8.pgpt /media/sd/MODEL.PGP`, onto a freshly formatted card so the file is in
//! one piece (the firmware maps it once and reads it straight from the card). KV positions
//! beyond the RAM go to `KV.BIN` beside it, created (or grown) when a context first needs it.
//! Without a card, a small pack written to flash at 0x1010_0000 (`flash.rs`) answers instead.
//!
//! Console: USB CDC-ACM on the Pico's own USB port (`picocom /dev/ttyACM0`); the banner comes
//! when the terminal opens the port (raises DTR). Type a prompt, text
//! (`Alan Turing theorized -n 8`, encoded on the board) or comma-separated token ids
//! (`36235,39141 -n 8 --bits`), with the flags of `host-tools run`, or just Enter for
//! picoGPT's prompt; the answer is the host's step and candidate lines, then the prompt pass
//! and ms per token. Any failure (no card, no file, a bad pack, a read error, a fault on the
//! model's core) is one `error:` line, and the next line is awaited.
//! Diagnostics: defmt over RTT (`cargo run --release` flashes with probe-rs and shows them).
//!
//! Core 0 runs USB; core 1 runs the model and the card: each 16 KiB window of the pack comes in
//! by DMA while core 1 computes on the one before (over SPI; over SDIO, DMA fills one block
//! while core 1 checks the one before). Both cores compute every matrix's rows, half each
//! (`share.rs`): core 0 between its USB tasks.
#![no_std]
#![no_main]

mod fault;
mod flash;
mod infer;
mod link;
mod ram;
#[cfg(not(feature = "sdio"))]
mod sd;
#[cfg(feature = "sdio")]
mod sdio;
mod share;
mod usb;

/// The card, on the bus this build chose.
#[cfg(not(feature = "sdio"))]
use sd as bus;
#[cfg(feature = "sdio")]
use sdio as bus;

use core::ptr::addr_of_mut;

use defmt_rtt as _;
use embassy_executor::Spawner;
use embassy_rp::multicore::spawn_core1;
use panic_probe as _;

use crate::infer::Core1;

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    match ram::take() {
        Some((memory, buffers, bus_ram)) => {
            #[cfg(not(feature = "sdio"))]
            let card = {
                let pins = (p.PIN_18, p.PIN_19, p.PIN_16, p.PIN_17);
                bus::card(p.SPI0, pins, (p.DMA_CH0, p.DMA_CH1), bus_ram)
            };
            #[cfg(feature = "sdio")]
            let card = {
                let (clk, cmd, dat0, dat1, dat2, dat3) =
                    (p.PIN_10, p.PIN_11, p.PIN_12, p.PIN_13, p.PIN_14, p.PIN_15);
                let pins = bus::Pins { clk, cmd, dat0, dat1, dat2, dat3 };
                bus::card(p.PIO0, p.DMA_CH0, pins, bus_ram)
            };
            defmt::info!("arena: {} bytes", ram::arena_bytes());
            if infer::install(Core1 { card, memory, buffers }) {
                // SAFETY: the only reference to CORE1_STACK made outside the fault handler
                // (which only takes its address), handed to core 1 once.
                let stack = unsafe { &mut *addr_of_mut!(fault::CORE1_STACK) };
                spawn_core1(p.CORE1, stack, || infer::serve());
            }
        }
        None => defmt::error!("RAM taken twice"),
    }
    match share::serve_rows() {
        Ok(task) => spawner.spawn(task),
        Err(_) => defmt::error!("the row-sharing task could not be spawned"),
    }
    usb::start(spawner, p.USB);
}
