//! The C6's 441 KiB of application RAM (esp-hal's memory map): code that must run from RAM,
//! the statics below — the arena each request splits between core's workspace and the KV
//! cache, the card's windows, a text prompt's buffers (the DMA run buffer is esp-hal's
//! static) — and the main stack, which gets everything after them (the linker insists on at
//! least 24 KiB; see `.cargo/config.toml`).

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::block::BLOCK_BYTES;
use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

use crate::sd::WINDOW_BLOCKS;

/// f32 words of the arena: 360 KiB, which leaves the stack its 24 KiB and more.
pub const ARENA_WORDS: usize = 360 * 1024 / 4;

/// The arena holds GPT-2 124M's workspace at batch 1, with room to spare.
const _: () = assert!(GPT2_124M_WORKSPACE_WORDS < ARENA_WORDS / 2);

/// The arena.
static mut ARENA: [f32; ARENA_WORDS] = [0.0; ARENA_WORDS];

/// The pack's window (16 KiB).
static mut PACK_WINDOW: [u8; WINDOW_BLOCKS * BLOCK_BYTES] = [0; WINDOW_BLOCKS * BLOCK_BYTES];

/// `KV.BIN`'s window.
static mut KV_WINDOW: [u8; 8 * BLOCK_BYTES] = [0; 8 * BLOCK_BYTES];

/// Token ids of an encoded text prompt.
static mut TOKENS: [u32; MAX_PROMPT] = [0; MAX_PROMPT];

/// BPE merge state while a text prompt is encoded.
static mut BPE: [u32; BPE_SCRATCH_WORDS] = [0; BPE_SCRATCH_WORDS];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The card's windows.
pub struct CardRam {
    /// The pack's window.
    pub pack: &'static mut [u8],
    /// `KV.BIN`'s window.
    pub kv: &'static mut [u8],
}

/// The arena, the prompt buffers and the card's windows; `None` after the first call.
pub fn take() -> Option<(Memory<'static>, CardRam)> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: this runs once (TAKEN), and nothing else names these statics.
    unsafe {
        let memory = Memory {
            ram: &mut *addr_of_mut!(ARENA),
            tokens: &mut *addr_of_mut!(TOKENS),
            bpe: &mut *addr_of_mut!(BPE),
        };
        let card =
            CardRam { pack: &mut *addr_of_mut!(PACK_WINDOW), kv: &mut *addr_of_mut!(KV_WINDOW) };
        Some((memory, card))
    }
}
