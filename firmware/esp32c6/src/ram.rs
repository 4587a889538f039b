//! The C6's 441 KiB of application RAM (esp-hal's memory map): code that must run from RAM,
//! the statics below, and the main stack, which gets everything after them (the linker
//! insists on at least 24 KiB; see `.cargo/config.toml`).

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

/// Bytes of the KV cache in RAM: 19 positions of GPT-2 124M with an int8 cache (19,584 bytes
/// each); longer contexts spill to `KV.BIN` on the card.
pub const KV_BYTES: usize = 19 * 19_584;

/// (f32 words) core's working memory: what GPT-2 124M int8 needs at batch 1 with 4 KiB
/// reads, with either activation path; smaller models batch their prompt in it.
static mut WORKSPACE: [f32; GPT2_124M_WORKSPACE_WORDS] = [0.0; GPT2_124M_WORKSPACE_WORDS];

/// The KV cache.
static mut KV: [u8; KV_BYTES] = [0; KV_BYTES];

/// Token ids of an encoded text prompt.
static mut TOKENS: [u32; MAX_PROMPT] = [0; MAX_PROMPT];

/// BPE merge state while a text prompt is encoded.
static mut BPE: [u32; BPE_SCRATCH_WORDS] = [0; BPE_SCRATCH_WORDS];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The workspace and KV cache; `None` after the first call.
pub fn take() -> Option<Memory<'static>> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: this runs once (TAKEN), and nothing else names these statics.
    unsafe {
        Some(Memory {
            workspace: &mut *addr_of_mut!(WORKSPACE),
            kv: &mut *addr_of_mut!(KV),
            tokens: &mut *addr_of_mut!(TOKENS),
            bpe: &mut *addr_of_mut!(BPE),
        })
    }
}
