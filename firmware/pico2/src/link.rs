//! The two cores' meeting point: core 0 (USB) hands typed lines to core 1 (the model), and
//! core 1's output flows back to core 0 through a byte pipe.

use core::fmt;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::pipe::Pipe;
use picogpt_board::line::Line;

/// Lines on their way to the model; one at a time, as the model serves one at a time.
pub static LINES: Channel<CriticalSectionRawMutex, Line, 1> = Channel::new();

/// Text on its way to the USB host.
pub static OUTPUT: Pipe<CriticalSectionRawMutex, 2048> = Pipe::new();

/// Core 1's console: blocking writes into [`OUTPUT`], `\n` sent as `\r\n` for terminals.
pub struct Console;

impl Console {
    /// Writes all of `bytes`, waiting while the pipe is full (core 0 drains it, or drops
    /// what it cannot send while no terminal is connected).
    fn write_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match OUTPUT.try_write(bytes) {
                Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
                Err(_) => core::hint::spin_loop(),
            }
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                self.write_all(b"\r\n");
            }
            self.write_all(part.as_bytes());
        }
        Ok(())
    }
}
