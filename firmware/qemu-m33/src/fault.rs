//! The last words: a panic or a fault prints one line and ends QEMU with a code of its own,
//! so a test tells them from an orderly error (1) or a usage error (2).

use core::fmt::Write;

use cortex_m::peripheral::SCB;

use crate::console::Console;
use crate::semihost;

/// Exit code after a panic (none is reachable from input; this is the safety net).
pub const PANIC_EXIT: u8 = 101;
/// Exit code after a HardFault, a stack overflow among them.
pub const FAULT_EXIT: u8 = 102;

/// CFSR's STKOF bit: the stack pointer went below MSPLIM.
const CFSR_STKOF: u32 = 1 << 20;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut console) = Console::open() {
        let _ = writeln!(console, "panic: {}", info.message());
        if let Some(at) = info.location() {
            let _ = writeln!(console, "  at {}:{}", at.file(), at.line());
        }
    }
    semihost::exit(PANIC_EXIT)
}

/// HardFault entry: the stack may be what failed, so drop the limit, restart on a fresh
/// stack (nothing returns from here) and report.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn HardFault() -> ! {
    core::arch::naked_asm!(
        "movs r0, #0",
        "msr MSPLIM, r0",
        "ldr r0, =_stack_start",
        "mov sp, r0",
        "b {report}",
        report = sym report_fault,
    )
}

/// Prints why the core faulted and exits.
extern "C" fn report_fault() -> ! {
    // SAFETY: a read of the fault status registers, which nothing else writes.
    let (cfsr, hfsr) = unsafe { ((*SCB::PTR).cfsr.read(), (*SCB::PTR).hfsr.read()) };
    if let Ok(mut console) = Console::open() {
        let _ = if cfsr & CFSR_STKOF != 0 {
            writeln!(console, "error: stack overflow (the stack is 32 KiB; see memory.x)")
        } else {
            writeln!(console, "error: hard fault (CFSR {cfsr:#010x}, HFSR {hfsr:#010x})")
        };
    }
    semihost::exit(FAULT_EXIT)
}
