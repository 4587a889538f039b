//! Faults: one `error:` line, and the console stays alive. A HardFault on core 1 (the model's:
//! a stack overflow caught by MSPLIM, a bad access) abandons the line being answered, stops
//! the card's DMA, and core 1 starts serving again on a fresh stack; a HardFault on core 0
//! (USB) resets the chip, since nothing could report it.

use core::ptr::addr_of;

use embassy_rp::multicore::Stack;
use embassy_rp::pac;

use crate::infer;
use crate::link::Console;

/// Core 1's stack: the model's. 32 KiB: the deepest path (a line's first pack open, the FAT
/// walk and embedded-sdmmc's directory search) stays near 16 KiB on the emulated boards.
pub const CORE1_STACK_BYTES: usize = 32 * 1024;

/// Core 1's stack (embassy's `spawn_core1` puts MSPLIM at its floor).
pub static mut CORE1_STACK: Stack<CORE1_STACK_BYTES> = Stack::new();

/// The configurable fault status register (which fault, and why).
const CFSR: *mut u32 = 0xe000_ed28 as *mut u32;
/// The HardFault status register.
const HFSR: *mut u32 = 0xe000_ed2c as *mut u32;
/// CFSR's STKOF bit: the stack pointer went below MSPLIM.
const CFSR_STKOF: u32 = 1 << 20;

/// HardFault entry. On core 1: builds an exception frame at the top of core 1's stack whose
/// return address is [`recover`] (its argument the faulting frame), puts MSP and MSPLIM there
/// and returns from the exception into it, in thread mode. On core 0: resets the chip.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn HardFault() -> ! {
    core::arch::naked_asm!(
        "ldr r1, =0xd0000000",
        "ldr r1, [r1]",
        "cmp r1, #1",
        "bne {reset}",
        "mrs r0, msp",
        "movs r1, #0",
        "msr msplim, r1",
        "ldr r1, ={stack}",
        "ldr r2, ={size}",
        "add r1, r1, r2",
        "subs r1, r1, #32",
        "movs r2, #0",
        "str r0, [r1, #0]",
        "str r2, [r1, #4]",
        "str r2, [r1, #8]",
        "str r2, [r1, #12]",
        "str r2, [r1, #16]",
        "str r2, [r1, #20]",
        "ldr r2, ={recover}",
        "bic r2, r2, #1",
        "str r2, [r1, #24]",
        "ldr r2, =0x01000000",
        "str r2, [r1, #28]",
        "msr msp, r1",
        "ldr r2, ={stack}",
        "msr msplim, r2",
        // Return to thread mode on MSP with a basic (no floating-point) frame.
        "orr lr, lr, #0x10",
        "bic lr, lr, #0x4",
        "bx lr",
        reset = sym reset_chip,
        stack = sym CORE1_STACK,
        size = const CORE1_STACK_BYTES,
        recover = sym recover,
    )
}

/// Core 0 faulted: nothing can report it, so start over.
extern "C" fn reset_chip() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// Core 1, back in thread mode on a fresh stack: stops the card's DMA, reports the fault and
/// serves again. `frame` is where the faulting context's registers were pushed.
extern "C" fn recover(frame: u32) -> ! {
    // The card's channels (0: transmit, 1: receive; see sd.rs).
    pac::DMA.chan_abort().write(|w| w.set_chan_abort(0b11));
    // SAFETY: reads, then clears (write-one-to-clear), the fault status registers.
    let (cfsr, hfsr) = unsafe {
        let status = (CFSR.read_volatile(), HFSR.read_volatile());
        CFSR.write_volatile(status.0);
        HFSR.write_volatile(status.1);
        status
    };
    let floor = addr_of!(CORE1_STACK) as u32;
    let in_stack = (floor..floor + CORE1_STACK_BYTES as u32 - 32).contains(&frame);
    // SAFETY: `frame` lies in core 1's stack (checked), where the fault pushed eight words;
    // the seventh is the faulting PC.
    let pc = in_stack.then(|| unsafe { (frame as *const u32).add(6).read_volatile() });
    infer::resume(|out: &mut Console| {
        use core::fmt::Write;
        if cfsr & CFSR_STKOF != 0 {
            writeln!(
                out,
                "error: core 1 ran out of stack ({CORE1_STACK_BYTES} bytes); the line was dropped"
            )
        } else {
            writeln!(
                out,
                "error: hard fault on core 1 (CFSR {cfsr:#010x}, HFSR {hfsr:#010x}, PC {:#010x}); \
                 the line was dropped",
                pc.unwrap_or(0)
            )
        }
    })
}
