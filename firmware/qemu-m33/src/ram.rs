//! The board's 520 KiB of RAM (see `memory.x`): a fixed stack at the bottom, the statics (a
//! text prompt's buffers), and every byte after them as the arena each request splits
//! between core's workspace and the KV cache.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

/// Word cortex-m-rt paints the stack with before `main` (its `paint-stack` feature).
const PAINT: u32 = 0xcccc_cccc;

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
    /// End of the statics (cortex-m-rt's `link.x`, word aligned): the arena starts here.
    static mut __sheap: u32;
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
    /// The arena split per request between workspace and KV cache.
    pub arena: usize,
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
        arena: end.saturating_sub(heap) / 4 * 4,
    }
}

/// The arena can hold GPT-2 124M's workspace at batch 1.
const _: () = assert!(4 * GPT2_124M_WORKSPACE_WORDS < 520 * 1024);

/// The arena and the prompt buffers; `None` after the first call.
pub fn take() -> Option<Memory<'static>> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let words = map().arena / 4;
    let start = addr_of_mut!(__sheap).cast::<f32>();
    // SAFETY: this runs once (TAKEN), so the regions are never aliased. TOKENS and BPE are
    // statics nobody else names. [__sheap, _kv_end) is word-aligned RAM the linker left to no
    // section and the stack does not reach (it is below the statics); it is zeroed (0.0f32)
    // before a slice is made of it.
    unsafe {
        core::ptr::write_bytes(start, 0, words);
        Some(Memory {
            ram: core::slice::from_raw_parts_mut(start, words),
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
