//! A pack in the Pico 2's own flash, read in place through the XIP window: what answers when
//! no SD card does. `host-tools uf2 --bin PACK --base 0x10100000` makes a UF2 that puts one
//! there (drag it onto the board's USB drive in BOOTSEL mode, after the firmware's).
//!
//! The firmware keeps the first MiB of flash (`memory.x`); a pack lives from [`PACK_ADDRESS`]
//! to the end of the Pico 2's 4 MiB, so it may be at most [`PACK_MAX_BYTES`] long: a small
//! model (GPT-2's tokenizer alone takes 1.5 MB), not GPT-2 124M.

/// Where a pack in flash starts: 1 MiB into the XIP window at `0x1000_0000`.
pub const PACK_ADDRESS: usize = 0x1010_0000;

/// Bytes from [`PACK_ADDRESS`] to the end of the Pico 2's 4 MiB flash.
pub const PACK_MAX_BYTES: usize = 3 * 1024 * 1024;

/// The flash from [`PACK_ADDRESS`] on; a pack is there if it starts with core's magic.
pub fn region() -> &'static [u8] {
    // SAFETY: [PACK_ADDRESS, PACK_ADDRESS + PACK_MAX_BYTES) is the Pico 2's QSPI flash,
    // mapped read-only by the XIP window from reset; nothing in this firmware programs or
    // erases flash, so the bytes never change while the slice lives.
    unsafe { core::slice::from_raw_parts(PACK_ADDRESS as *const u8, PACK_MAX_BYTES) }
}
