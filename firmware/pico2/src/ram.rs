//! SRAM0-7 (see `memory.x`): the statics, core's workspace, a text prompt's buffers and core
//! 1's stack among them, then every byte left for the KV cache.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

/// (f32 words) core's working memory: what GPT-2 124M int8 needs at batch 1 with 4 KiB
/// reads, with either activation path; smaller models batch their prompt in it.
static mut WORKSPACE: [f32; GPT2_124M_WORKSPACE_WORDS] = [0.0; GPT2_124M_WORKSPACE_WORDS];

/// Token ids of an encoded text prompt.
static mut TOKENS: [u32; MAX_PROMPT] = [0; MAX_PROMPT];

/// BPE merge state while a text prompt is encoded.
static mut BPE: [u32; BPE_SCRATCH_WORDS] = [0; BPE_SCRATCH_WORDS];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// End of the statics (cortex-m-rt's `link.x`): the KV cache starts here.
    static mut __sheap: u8;
    /// End of SRAM0-7 (`memory.x`).
    static _kv_end: u8;
}

/// Bytes between the end of the statics and the end of RAM.
pub fn kv_bytes() -> usize {
    (addr_of!(_kv_end) as usize).saturating_sub(addr_of!(__sheap) as usize)
}

/// The workspace and KV cache; `None` after the first call.
pub fn take() -> Option<Memory<'static>> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let kv_start = addr_of_mut!(__sheap);
    let kv_len = kv_bytes();
    // SAFETY: this runs once (TAKEN), so the regions are never aliased. WORKSPACE, TOKENS and
    // BPE are statics nobody else names. [__sheap, _kv_end) is RAM the linker left to no section and
    // no stack uses (core 0's is in SRAM8-9, core 1's a static); it is zeroed first.
    unsafe {
        core::ptr::write_bytes(kv_start, 0, kv_len);
        Some(Memory {
            workspace: &mut *addr_of_mut!(WORKSPACE),
            kv: core::slice::from_raw_parts_mut(kv_start, kv_len),
            tokens: &mut *addr_of_mut!(TOKENS),
            bpe: &mut *addr_of_mut!(BPE),
        })
    }
}
