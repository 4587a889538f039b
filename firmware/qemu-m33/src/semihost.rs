//! The ARM semihosting calls this firmware makes, each behind a safe function.
//!
//! A call is `BKPT 0xAB` with the operation in r0 and a pointer to its parameter block in
//! r1; QEMU (`-semihosting-config enable=on`) performs it on the host and returns in r0.
//! All offsets and lengths are 32-bit on A32/T32 semihosting.

use core::fmt;

use cortex_m_semihosting::{nr, syscall1};

/// SYS_EXIT_EXTENDED: exit with a reason and a status code (QEMU exits with the code).
const SYS_EXIT_EXTENDED: usize = 0x20;
/// ADP_Stopped_ApplicationExit: the reason for a normal exit, whatever the status.
const APPLICATION_EXIT: usize = 0x2_0026;

/// A host file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(usize);

/// A failed semihosting call: the operation and the host's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError {
    /// `open`, `read`, `seek`, `flen`, …
    pub op: &'static str,
    /// The host's `errno` after the call.
    pub errno: usize,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.errno {
            1 | 13 => "permission denied",
            2 => "no such file or directory",
            5 => "I/O error",
            9 => "bad file handle",
            21 => "is a directory",
            22 => "invalid argument",
            36 => "file name too long",
            _ => "host error",
        };
        write!(f, "semihosting {} failed: {what} (errno {})", self.op, self.errno)
    }
}

/// Runs operation `op` with parameter block `block` (which the host may write); returns r0.
fn call<T>(op: usize, block: &mut T) -> usize {
    // SAFETY: every caller passes a parameter block laid out as `op` requires, whose
    // pointers stay valid (and, for reads, writable) for the duration of the call; the host
    // touches no other guest memory.
    unsafe { syscall1(op, block as *mut T as usize) }
}

/// The result of a call that returns -1 on failure.
fn checked(op: &'static str, r0: usize) -> Result<usize, HostError> {
    if r0 as isize == -1 { Err(HostError { op, errno: errno() }) } else { Ok(r0) }
}

/// The host's `errno` of the last failed call.
fn errno() -> usize {
    call(nr::ERRNO, &mut 0usize)
}

/// Opens `path` (NUL-terminated) with fopen mode `mode` (see `nr::open`).
pub fn open(path: &core::ffi::CStr, mode: usize) -> Result<Handle, HostError> {
    let bytes = path.to_bytes();
    let mut block = [bytes.as_ptr() as usize, mode, bytes.len()];
    checked("open", call(nr::OPEN, &mut block)).map(Handle)
}

/// Closes a handle.
pub fn close(handle: Handle) -> Result<(), HostError> {
    checked("close", call(nr::CLOSE, &mut [handle.0])).map(|_| ())
}

/// Length of an open file.
pub fn flen(handle: Handle) -> Result<u64, HostError> {
    checked("flen", call(nr::FLEN, &mut [handle.0])).map(|n| n as u64)
}

/// Moves to absolute position `pos`.
pub fn seek(handle: Handle, pos: u32) -> Result<(), HostError> {
    let r0 = call(nr::SEEK, &mut [handle.0, pos as usize]);
    if r0 == 0 { Ok(()) } else { Err(HostError { op: "seek", errno: errno() }) }
}

/// Reads into `buf`; returns how many bytes were read (0 at the end of the file).
///
/// SYS_READ returns the number of bytes *not* read: 0 when `buf` was filled.
pub fn read(handle: Handle, buf: &mut [u8]) -> Result<usize, HostError> {
    let mut block = [handle.0, buf.as_mut_ptr() as usize, buf.len()];
    let not_read = call(nr::READ, &mut block);
    match buf.len().checked_sub(not_read) {
        Some(read) => Ok(read),
        None => Err(HostError { op: "read", errno: errno() }),
    }
}

/// Writes all of `bytes`.
pub fn write(handle: Handle, bytes: &[u8]) -> Result<(), HostError> {
    let mut block = [handle.0, bytes.as_ptr() as usize, bytes.len()];
    match call(nr::WRITE, &mut block) {
        0 => Ok(()),
        _ => Err(HostError { op: "write", errno: errno() }),
    }
}

/// Copies the command line QEMU was given (`-semihosting-config arg=…`, joined by spaces)
/// into `buf` and returns it.
pub fn command_line(buf: &mut [u8]) -> Result<&[u8], HostError> {
    // The host writes the line and a NUL, and stores its length (without the NUL) in the
    // block's second word.
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    let r0 = call(nr::GET_CMDLINE, &mut block);
    if r0 != 0 {
        return Err(HostError { op: "get_cmdline (command line too long?)", errno: errno() });
    }
    Ok(buf.get(..block[1]).unwrap_or(buf))
}

/// Ends the emulation; QEMU exits with `code`.
pub fn exit(code: u8) -> ! {
    let mut block = [APPLICATION_EXIT, usize::from(code)];
    call(SYS_EXIT_EXTENDED, &mut block);
    // Only a host without semihosting returns here.
    loop {
        cortex_m::asm::bkpt();
    }
}
