//! `host-tools flash-pack`: checks that a pack fits the ESP32-C6's flash after its firmware,
//! and prints the espflash command that writes it there (the Pico 2's equivalent is
//! `host-tools uf2 --bin`).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use picogpt_core::format::MAGIC;

use super::uf2::size;

/// Where the ESP32-C6 firmware looks for a pack in flash (`firmware/esp32c6/src/flash.rs`).
const ESP32C6_PACK_OFFSET: u32 = 0x20_0000;

#[derive(clap::Args)]
pub struct Args {
    /// The pack to write to flash.
    pack: PathBuf,
    /// The board (only esp32c6 reads a pack from flash through this command).
    #[arg(long, value_parser = ["esp32c6"], default_value = "esp32c6")]
    board: String,
    /// The board's flash: 4M on an ESP32-C6 module with 4 MiB, 8M on the DevKitC-1.
    #[arg(long, value_parser = size, default_value = "4M")]
    flash_size: u32,
}

pub fn main(args: Args) -> Result<()> {
    let path = &args.pack;
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if !bytes.starts_with(&MAGIC) {
        bail!("{}: not a picogpt pack (it does not start with PGPT)", path.display());
    }
    let room = u64::from(args.flash_size).saturating_sub(u64::from(ESP32C6_PACK_OFFSET));
    if bytes.len() as u64 > room {
        bail!(
            "{}: {} bytes, but the {} MiB flash leaves {room} after the firmware's 2 MiB \
             (from {ESP32C6_PACK_OFFSET:#x}): use a smaller pack (host-tools pack \
             --no-tokenizer leaves 1.5 MB out), or give --flash-size for a bigger flash",
            path.display(),
            bytes.len(),
            args.flash_size >> 20
        );
    }
    println!(
        "{}: {} bytes fit the {} flash ({room} bytes from {ESP32C6_PACK_OFFSET:#x}); write it with:",
        path.display(),
        bytes.len(),
        args.board
    );
    println!("espflash write-bin --chip esp32c6 {ESP32C6_PACK_OFFSET:#x} {}", path.display());
    Ok(())
}
