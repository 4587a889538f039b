//! The console on the C6's USB-Serial-JTAG port: lines in (UTF-8 text included, echoed, with
//! backspace), text out with `\r\n`. Output gives up after a short wait while no terminal drains it, so the model
//! never hangs on a closed port; the next typed byte re-enables it.

use core::fmt;

use esp_hal::Blocking;
use esp_hal::time::{Duration, Instant};
use esp_hal::usb::usb_serial_jtag::UsbSerialJtag;
use picogpt_board::line::{Edit, Editor, Line};

/// How long a full FIFO may stay full before the port counts as closed.
const STALL: Duration = Duration::from_millis(100);

/// The USB-Serial-JTAG port as a console.
pub struct Console {
    usb: UsbSerialJtag<'static, Blocking>,
    /// No terminal drained the last bytes in time: drop output until one types.
    closed: bool,
    /// The line being typed (CR LF ends it once).
    editor: Editor,
}

impl Console {
    /// Wraps the port.
    pub fn new(usb: UsbSerialJtag<'static, Blocking>) -> Self {
        Self { usb, closed: false, editor: Editor::new() }
    }

    /// Waits for a line, echoing what is typed.
    pub fn read_line(&mut self) -> Line {
        loop {
            let Ok(byte) = self.usb.read_byte() else { continue };
            self.closed = false;
            match self.editor.edit(byte) {
                Edit::Enter => {
                    self.send(b"\r\n");
                    return self.editor.take();
                }
                Edit::Echo(byte) => self.send(&[byte]),
                Edit::Erase => self.send(b"\x08 \x08"),
                Edit::Ignore => {}
            }
        }
    }

    /// Sends `bytes` and flushes them, unless the port is closed.
    fn send(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.wait(|usb| usb.write_byte_nb(byte).is_ok());
        }
        self.wait(|usb| usb.flush_tx_nb().is_ok());
    }

    /// Retries `step` until it succeeds, or marks the port closed after [`STALL`].
    fn wait(&mut self, mut step: impl FnMut(&mut UsbSerialJtag<'static, Blocking>) -> bool) {
        let start = Instant::now();
        while !self.closed && !step(&mut self.usb) {
            self.closed = start.elapsed() > STALL;
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                self.send(b"\r\n");
            }
            self.send(part.as_bytes());
        }
        Ok(())
    }
}
