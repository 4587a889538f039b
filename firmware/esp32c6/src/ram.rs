//! The C6's 441 KiB of application RAM (esp-hal's memory map): code that must run from RAM,
//! the statics below, and the main stack, which gets everything after them (the linker
//! insists on at least 24 KiB; see `.cargo/config.toml`).

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::GPT2_124M_WORKSPACE_WORDS;

/// Bytes of the KV cache: 19 positions of GPT-2 124M with an int8 cache (19,584 bytes each).
pub const KV_BYTES: usize = 19 * 19_584;

/// (f32 words) core's working memory: what GPT-2 124M int8 needs at batch 1 with 4 KiB
/// reads, with either activation path; smaller models batch their prompt in it.
static mut WORKSPACE: [f32; GPT2_124M_WORKSPACE_WORDS] = [0.0; GPT2_124M_WORKSPACE_WORDS];

/// The KV cache.
static mut KV: [u8; KV_BYTES] = [0; KV_BYTES];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The RAM the forward pass works in.
pub struct Ram {
    /// Core's workspace.
    pub workspace: &'static mut [f32],
    /// The KV cache.
    pub kv: &'static mut [u8],
}

/// The workspace and KV cache; `None` after the first call.
pub fn take() -> Option<Ram> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: this runs once (TAKEN), and nothing else names the two statics.
    unsafe { Some(Ram { workspace: &mut *addr_of_mut!(WORKSPACE), kv: &mut *addr_of_mut!(KV) }) }
}
