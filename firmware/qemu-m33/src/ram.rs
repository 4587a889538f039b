//! The board's 520 KiB of RAM (see `memory.x`): a fixed stack at the bottom, the statics
//! (core's workspace for GPT-2 124M and a text prompt's buffers among them), and every byte
//! after them for the KV cache.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

/// Word cortex-m-rt paints the stack with before `main` (its `paint-stack` feature).
const PAINT: u32 = 0xcccc_cccc;

/// (f32 words) core's working memory: exactly what GPT-2 124M int8 needs at batch 1 with
/// 4 KiB reads; smaller models batch their prompt in it.
static mut WORKSPACE: [f32; GPT2_124M_WORKSPACE_WORDS] = [0.0; GPT2_124M_WORKSPACE_WORDS];

/// Token ids of an encoded text prompt.
static mut TOKENS: [u32; MAX_PROMPT] = [0; MAX_PROMPT];

/// BPE merge state while a text prompt is encoded.
static mut BPE: [u32; BPE_SCRATCH_WORDS] = [0; BPE_SCRATCH_WORDS];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// Floor of the stack (`memory.x`).
    static _stack_end: u32;
    /// Top of the stack, where the statics begin (`memory.x`).
    static _stack_start: u32;
    /// End of the statics (cortex-m-rt's `link.x`): the KV cache starts here.
    static mut __sheap: u8;
    /// End of RAM (`memory.x`).
    static _kv_end: u8;
}

/// How the RAM is divided, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Map {
    /// All of it.
    pub total: usize,
    /// The stack.
    pub stack: usize,
    /// `.data` and `.bss`.
    pub statics: usize,
    /// Of the statics, core's workspace.
    pub workspace: usize,
    /// The KV cache.
    pub kv: usize,
}

/// Where the regions lie, from the linker's symbols.
pub fn map() -> Map {
    let stack_end = addr_of!(_stack_end) as usize;
    let stack_start = addr_of!(_stack_start) as usize;
    let heap = addr_of!(__sheap) as usize;
    let end = addr_of!(_kv_end) as usize;
    // memory.x orders them: _stack_end <= _stack_start <= __sheap <= _kv_end.
    Map {
        total: end.saturating_sub(stack_end),
        stack: stack_start.saturating_sub(stack_end),
        statics: heap.saturating_sub(stack_start),
        workspace: 4 * GPT2_124M_WORKSPACE_WORDS,
        kv: end.saturating_sub(heap),
    }
}

/// The workspace and KV cache; `None` after the first call.
pub fn take() -> Option<Memory<'static>> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let kv_len = map().kv;
    let kv_start = addr_of_mut!(__sheap);
    // SAFETY: this runs once (TAKEN), so the regions are never aliased. WORKSPACE, TOKENS and
    // BPE are statics nobody else names. [__sheap, _kv_end) is RAM the linker left to no section;
    // it is zeroed before a slice is made of it.
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

/// The deepest the stack has reached, in bytes: painted words left untouched are unused.
pub fn stack_used() -> usize {
    let floor = addr_of!(_stack_end);
    let words = map().stack / 4;
    let untouched = (0..words)
        // SAFETY: every word of [_stack_end, _stack_start) is RAM; reading one, even the
        // current frame's, is a plain load.
        .take_while(|&i| unsafe { floor.add(i).read_volatile() } == PAINT)
        .count();
    4 * (words.saturating_sub(untouched))
}
