//! The last words: a panic or a trap prints one line and ends QEMU with a code of its own, so
//! a test tells them from an orderly error (1) or a usage error (2).

use core::fmt::Write;

use riscv::register::{mcause, mepc, mtval};

use crate::semihost;
use crate::uart::Uart;

/// Exit code after a panic (none is reachable from input; this is the safety net).
pub const PANIC_EXIT: u8 = 101;
/// Exit code after an exception (a bad access, an illegal instruction).
pub const TRAP_EXIT: u8 = 102;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut console = Uart::new();
    let _ = writeln!(console, "panic: {}", info.message());
    if let Some(at) = info.location() {
        let _ = writeln!(console, "  at {}:{}", at.file(), at.line());
    }
    semihost::exit(PANIC_EXIT)
}

/// Any exception: says which and where, and exits.
#[unsafe(export_name = "ExceptionHandler")]
fn exception(_frame: &riscv_rt::TrapFrame) -> ! {
    let mut console = Uart::new();
    let (cause, pc, value) = (mcause::read().bits(), mepc::read(), mtval::read());
    let _ =
        writeln!(console, "error: trap (mcause {cause:#x}, mepc {pc:#010x}, mtval {value:#010x})");
    semihost::exit(TRAP_EXIT)
}
