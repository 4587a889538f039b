//! The one way the commands write to stdout.
//!
//! `print!` and `println!` in this crate are the macros below, which shadow std's: std's
//! panic when a write fails (exit status 101 and a backtrace hint for `> /dev/full` or a full
//! disk), while these end the command with one `error: writing to stdout: …` line and exit
//! status 1, after removing any unfinished output file. A closed pipe (`| head`) still ends
//! the process quietly through SIGPIPE, as for other command-line tools.

use std::fmt;
use std::io::{self, Write};

/// std's `print!`, ending the command cleanly when stdout fails.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// std's `println!`, ending the command cleanly when stdout fails.
macro_rules! println {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stdout, or ends the command if that fails.
pub fn write(text: fmt::Arguments<'_>) {
    if let Err(e) = io::stdout().lock().write_fmt(text) {
        fail(&e);
    }
}

/// Writes out what stdout still buffers (text without a newline), or ends the command if that
/// fails: called after text that must appear now, and before the process exits.
pub fn flush() {
    if let Err(e) = io::stdout().lock().flush() {
        fail(&e);
    }
}

fn fail(error: &io::Error) -> ! {
    crate::stop::remove_unfinished();
    eprintln!("error: writing to stdout: {error}");
    std::process::exit(1)
}
