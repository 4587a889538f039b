//! SRAM0-7 (see `memory.x`): the statics — the card's windows and the bus's DMA buffer, a text
//! prompt's buffers, core 1's stack, USB's buffers — then every byte left as the arena each
//! request splits between core's workspace and the KV cache.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::block::BLOCK_BYTES;
use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

/// Blocks of the pack's window: what one multi-block read (and one DMA run) moves.
pub const WINDOW_BLOCKS: usize = 32;

/// The pack's window (16 KiB).
static mut PACK_WINDOW: [u8; WINDOW_BLOCKS * BLOCK_BYTES] = [0; WINDOW_BLOCKS * BLOCK_BYTES];

/// `KV.BIN`'s window.
static mut KV_WINDOW: [u8; 8 * BLOCK_BYTES] = [0; 8 * BLOCK_BYTES];

/// The bus's own buffer: over SPI, a window's blocks as the card sends them (tokens, CRCs),
/// the DMA run buffer; over SDIO, two blocks' words (DMA fills one while the CPU checks the
/// other's CRCs).
#[cfg(not(feature = "sdio"))]
pub type BusRam = [u8; WINDOW_BLOCKS * picogpt_board::sdspi::FRAME_BYTES];
/// The bus's own buffer (see the SPI build's).
#[cfg(feature = "sdio")]
pub type BusRam = crate::sdio::Bounce;

/// The bus's buffer.
#[cfg(not(feature = "sdio"))]
static mut BUS: BusRam = [0; WINDOW_BLOCKS * picogpt_board::sdspi::FRAME_BYTES];
/// The bus's buffer.
#[cfg(feature = "sdio")]
static mut BUS: BusRam = [[0; picogpt_sdio::sm::MAX_BLOCK_WORDS]; 2];

/// Token ids of an encoded text prompt.
static mut TOKENS: [u32; MAX_PROMPT] = [0; MAX_PROMPT];

/// BPE merge state while a text prompt is encoded.
static mut BPE: [u32; BPE_SCRATCH_WORDS] = [0; BPE_SCRATCH_WORDS];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// End of the statics (cortex-m-rt's `link.x`, word aligned): the arena starts here.
    static mut __sheap: u32;
    /// End of SRAM0-7 (`memory.x`).
    static _kv_end: u8;
}

/// Bytes between the end of the statics and the end of RAM.
pub fn arena_bytes() -> usize {
    (addr_of!(_kv_end) as usize).saturating_sub(addr_of!(__sheap) as usize) / 4 * 4
}

/// The arena holds GPT-2 124M's workspace at batch 1, with room to spare.
const _: () = assert!(4 * GPT2_124M_WORKSPACE_WORDS < 256 * 1024);

/// The card's windows.
pub struct CardRam {
    /// The pack's window.
    pub pack: &'static mut [u8],
    /// `KV.BIN`'s window.
    pub kv: &'static mut [u8],
}

/// The arena, the prompt buffers, the card's windows and the bus's buffer; `None` after the
/// first call.
pub fn take() -> Option<(Memory<'static>, CardRam, &'static mut BusRam)> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let words = arena_bytes() / 4;
    let start = addr_of_mut!(__sheap).cast::<f32>();
    // SAFETY: this runs once (TAKEN), so the regions are never aliased. The statics are named
    // nowhere else. [__sheap, _kv_end) is word-aligned RAM the linker left to no section and no
    // stack uses (core 0's is in SRAM8-9, core 1's a static); it is zeroed (0.0f32) first.
    unsafe {
        core::ptr::write_bytes(start, 0, words);
        let memory = Memory {
            ram: core::slice::from_raw_parts_mut(start, words),
            tokens: &mut *addr_of_mut!(TOKENS),
            bpe: &mut *addr_of_mut!(BPE),
        };
        let card =
            CardRam { pack: &mut *addr_of_mut!(PACK_WINDOW), kv: &mut *addr_of_mut!(KV_WINDOW) };
        Some((memory, card, &mut *addr_of_mut!(BUS)))
    }
}
