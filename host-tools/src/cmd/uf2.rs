//! `host-tools uf2`: the Pico 2's firmware ELF and/or a pack as a UF2 for its USB drive.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use host_tools::uf2::{self, Image, PICO2_FLASH_END, PICO2_PACK_ADDRESS};

#[derive(clap::Args)]
pub struct Args {
    /// Firmware ELF: its loadable segments go to their physical addresses.
    elf: Option<PathBuf>,
    /// A file to write to flash as is (a pack for the Pico 2 firmware to read through XIP).
    #[arg(long, value_name = "FILE")]
    bin: Option<PathBuf>,
    /// Flash address of `--bin`: 4 KiB-aligned (an erase sector), in the XIP window.
    #[arg(long, value_parser = address, default_value = "0x10100000")]
    base: u32,
    /// UF2 family: rp2350-arm-s (the Pico 2's firmware), rp2350-riscv, rp2350-arm-ns,
    /// rp2040, absolute, data, or a number such as 0xe48bff59.
    #[arg(long, value_parser = family, default_value = "rp2350-arm-s")]
    family: u32,
    /// The UF2 to write.
    #[arg(short, long)]
    out: PathBuf,
}

pub fn main(args: Args) -> Result<()> {
    if args.elf.is_none() && args.bin.is_none() {
        bail!("give a firmware ELF, a --bin file, or both");
    }
    let mut image = Image::new();
    if let Some(path) = &args.elf {
        let named = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
        let elf = std::fs::read(path).map_err(|e| named(&e))?;
        let segments = image.add_elf(&elf).map_err(|e| named(&e))?;
        for s in segments {
            let end = u64::from(s.address) + s.bytes.len() as u64;
            println!(
                "{}: {} bytes at {:#010x}..{end:#010x}",
                path.display(),
                s.bytes.len(),
                s.address
            );
        }
    }
    if let Some(path) = &args.bin {
        let named = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
        let bytes = std::fs::read(path).map_err(|e| named(&e))?;
        check_base(args.base, bytes.len())?;
        image.add(args.base, &bytes).map_err(|e| named(&e))?;
        let end = u64::from(args.base) + bytes.len() as u64;
        println!("{}: {} bytes at {:#010x}..{end:#010x}", path.display(), bytes.len(), args.base);
        if args.base == PICO2_PACK_ADDRESS && end > u64::from(PICO2_FLASH_END) {
            println!(
                "note: this ends beyond a Pico 2's 4 MiB of flash ({PICO2_FLASH_END:#010x}): \
                 its firmware reads a pack of at most {} bytes there",
                PICO2_FLASH_END - PICO2_PACK_ADDRESS
            );
        }
    }
    let uf2 = image.to_uf2(args.family);
    std::fs::write(&args.out, &uf2).map_err(|e| anyhow!("{}: {e}", args.out.display()))?;
    println!(
        "{}: {} blocks of {} payload bytes, family {:#010x}",
        args.out.display(),
        uf2.len() / uf2::BLOCK_BYTES,
        uf2::PAGE_BYTES,
        args.family
    );
    Ok(())
}

/// `--base` must start an erase sector (the boot ROM erases whole sectors, so a file sharing
/// one with the firmware would erase some of it) and the file must fit the flash window.
fn check_base(base: u32, len: usize) -> Result<()> {
    if !base.is_multiple_of(uf2::SECTOR_BYTES) {
        bail!("--base {base:#010x} does not start a {}-byte flash sector", uf2::SECTOR_BYTES);
    }
    let end = u64::from(base) + len as u64;
    if base < uf2::FLASH_START || end > u64::from(uf2::FLASH_END) {
        bail!(
            "{len} bytes at {base:#010x} do not fit the flash window {:#010x}..{:#010x}",
            uf2::FLASH_START,
            uf2::FLASH_END
        );
    }
    Ok(())
}

/// A hexadecimal (`0x…`) or decimal address.
fn address(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(&hex.replace('_', ""), 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a 32-bit address such as 0x10100000"))
}

/// A family by name (pico-sdk's `boot/uf2.h`), or its number.
fn family(text: &str) -> Result<u32, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "rp2040" => uf2::RP2040,
        "absolute" => uf2::ABSOLUTE,
        "data" => uf2::DATA,
        "rp2350-arm-s" => uf2::RP2350_ARM_S,
        "rp2350-riscv" => uf2::RP2350_RISCV,
        "rp2350-arm-ns" => uf2::RP2350_ARM_NS,
        other => address(other).map_err(|_| {
            format!(
                "unknown family {text:?}: rp2350-arm-s, rp2350-riscv, rp2350-arm-ns, rp2040, \
                 absolute, data or a number"
            )
        })?,
    })
}
