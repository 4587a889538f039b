//! The RISC-V semihosting calls this firmware makes: its command line and its exit.
//!
//! A call is the sequence `slli x0, x0, 0x1f; ebreak; srai x0, x0, 7` (uncompressed, so QEMU
//! recognises it) with the operation in a0 and a pointer to its parameter block in a1; QEMU
//! (`-semihosting-config enable=on`) performs it on the host and returns in a0. Offsets and
//! lengths are 32-bit on RV32.

/// SYS_GET_CMDLINE: the command line QEMU was given (`-semihosting-config arg=…`).
const SYS_GET_CMDLINE: usize = 0x15;
/// SYS_EXIT_EXTENDED: exit with a reason and a status code (QEMU exits with the code).
const SYS_EXIT_EXTENDED: usize = 0x20;
/// ADP_Stopped_ApplicationExit: the reason for a normal exit, whatever the status.
const APPLICATION_EXIT: usize = 0x2_0026;

/// Runs operation `op` with parameter block `block` (which the host may write); returns a0.
fn call<T>(op: usize, block: &mut T) -> usize {
    let mut a0 = op;
    // SAFETY: the three instructions are QEMU's semihosting trap; the host reads and writes
    // only the parameter block (whose pointers every caller keeps valid for the call) and a0.
    unsafe {
        core::arch::asm!(
            ".option push",
            ".option norvc",
            ".balign 16",
            "slli x0, x0, 0x1f",
            "ebreak",
            "srai x0, x0, 7",
            ".option pop",
            inout("a0") a0,
            in("a1") block as *mut T as usize,
            options(nostack),
        );
    }
    a0
}

/// Copies the command line QEMU was given (its `arg=` words, joined by spaces) into `buf` and
/// returns it; `None` if it does not fit.
pub fn command_line(buf: &mut [u8]) -> Option<&[u8]> {
    // The host writes the line and a NUL, and stores its length (without the NUL) in the
    // block's second word.
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    if call(SYS_GET_CMDLINE, &mut block) != 0 {
        return None;
    }
    buf.get(..block[1])
}

/// Ends the emulation; QEMU exits with `code`.
pub fn exit(code: u8) -> ! {
    let mut block = [APPLICATION_EXIT, usize::from(code)];
    call(SYS_EXIT_EXTENDED, &mut block);
    // Only a host without semihosting returns here.
    loop {
        riscv::asm::wfi();
    }
}
