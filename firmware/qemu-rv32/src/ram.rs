//! The board's 512 KiB of RAM (see `memory.x`): the statics (the card's windows and run
//! buffer, a text prompt's buffers), the arena each request splits between core's workspace
//! and the KV cache, and the stack at the top.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use picogpt_board::block::BLOCK_BYTES;
use picogpt_board::sdspi::FRAME_BYTES;
use picogpt_board::{BPE_SCRATCH_WORDS, GPT2_124M_WORKSPACE_WORDS, MAX_PROMPT, Memory};

/// Blocks of the pack's window: what one multi-block read (and one background run) moves.
pub const WINDOW_BLOCKS: usize = 32;

/// Word the stack is painted with before `main`, to measure its use.
const PAINT: u32 = 0xcccc_cccc;

/// The pack's window (16 KiB).
static mut PACK_WINDOW: [u8; WINDOW_BLOCKS * BLOCK_BYTES] = [0; WINDOW_BLOCKS * BLOCK_BYTES];

/// `KV.BIN`'s window.
static mut KV_WINDOW: [u8; 8 * BLOCK_BYTES] = [0; 8 * BLOCK_BYTES];

/// A window's blocks as the card sends them (tokens, CRCs): one background run.
static mut RUN: [u8; WINDOW_BLOCKS * FRAME_BYTES] = [0; WINDOW_BLOCKS * FRAME_BYTES];

/// Token ids of an encoded text prompt.
static mut TOKENS: [u32; MAX_PROMPT] = [0; MAX_PROMPT];

/// BPE merge state while a text prompt is encoded.
static mut BPE: [u32; BPE_SCRATCH_WORDS] = [0; BPE_SCRATCH_WORDS];

/// Whether [`take`] has handed the buffers out.
static TAKEN: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// Start of RAM's statics (riscv-rt's `link.x`).
    static __sdata: u8;
    /// End of the statics (riscv-rt's `link.x`, word aligned): the arena starts here.
    static mut __sheap: u32;
    /// Floor of the stack (`memory.x`).
    static _stack_floor: u32;
    /// Top of the stack (riscv-rt's `link.x`).
    static _stack_start: u8;
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
    let start = addr_of!(__sdata) as usize;
    let heap = addr_of!(__sheap) as usize;
    let floor = addr_of!(_stack_floor) as usize;
    let top = addr_of!(_stack_start) as usize;
    // memory.x and link.x order them: __sdata <= __sheap <= _stack_floor <= _stack_start.
    Map {
        total: top.saturating_sub(start),
        stack: top.saturating_sub(floor),
        statics: heap.saturating_sub(start),
        arena: floor.saturating_sub(heap) / 4 * 4,
    }
}

/// The arena holds GPT-2 124M's workspace at batch 1, with room to spare.
const _: () = assert!(4 * GPT2_124M_WORKSPACE_WORDS < 256 * 1024);

/// What the card reads through.
pub struct CardRam {
    /// The pack's window.
    pub pack: &'static mut [u8],
    /// `KV.BIN`'s window.
    pub kv: &'static mut [u8],
    /// The SPI bus's run buffer.
    pub run: &'static mut [u8],
}

/// The arena, the prompt buffers and the card's buffers; `None` after the first call.
pub fn take() -> Option<(Memory<'static>, CardRam)> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let words = map().arena / 4;
    let start = addr_of_mut!(__sheap).cast::<f32>();
    // SAFETY: this runs once (TAKEN), so the regions are never aliased. The statics are named
    // nowhere else. [__sheap, _stack_floor) is word-aligned RAM the linker left to no section,
    // below the stack's floor; it is zeroed (0.0f32) before a slice is made of it.
    unsafe {
        core::ptr::write_bytes(start, 0, words);
        let memory = Memory {
            ram: core::slice::from_raw_parts_mut(start, words),
            tokens: &mut *addr_of_mut!(TOKENS),
            bpe: &mut *addr_of_mut!(BPE),
        };
        let card = CardRam {
            pack: &mut *addr_of_mut!(PACK_WINDOW),
            kv: &mut *addr_of_mut!(KV_WINDOW),
            run: &mut *addr_of_mut!(RUN),
        };
        Some((memory, card))
    }
}

/// Paints the stack below the current frame (leaving 256 bytes for this call), so that
/// [`stack_used`] can tell how deep it went.
pub fn paint_stack() {
    let floor = addr_of!(_stack_floor) as usize;
    let sp: usize;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mv {0}, sp", out(reg) sp) };
    let words = sp.saturating_sub(256).saturating_sub(floor) / 4;
    for i in 0..words {
        // SAFETY: [floor, sp - 256) is stack RAM below every live frame.
        unsafe { (floor as *mut u32).add(i).write_volatile(PAINT) };
    }
}

/// The deepest the stack has reached, in bytes: painted words left untouched are unused.
pub fn stack_used() -> usize {
    let floor = addr_of!(_stack_floor);
    let words = map().stack / 4;
    let untouched = (0..words)
        // SAFETY: every word of [_stack_floor, _stack_start) is RAM; reading one, even the
        // current frame's, is a plain load.
        .take_while(|&i| unsafe { floor.add(i).read_volatile() } == PAINT)
        .count();
    4 * (words.saturating_sub(untouched))
}
