//! Ending a command before it finishes: on Ctrl-C, SIGTERM or SIGHUP, and when stdout fails.
//!
//! Destructors do not run then, so the files being written are removed here, through the one
//! registry every output goes through ([`host_tools::partial`]), and the user is told what was
//! removed and what was kept (a download's partial file, which the next run resumes).

use std::io::IsTerminal;

/// Removes every unfinished output file and says so on stderr; a download's partial file is
/// kept, with a word on how to resume it. No new output file can start afterwards.
pub fn remove_unfinished() {
    let done = host_tools::partial::remove_all();
    if (done.removed.len() + done.kept.len()) > 0 && std::io::stderr().is_terminal() {
        // The progress bar's line is still open.
        eprintln!();
    }
    for path in &done.removed {
        eprintln!("removed the unfinished {}", path.display());
    }
    for path in &done.kept {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        eprintln!("kept {} ({bytes} bytes): run the same command again to resume", path.display());
    }
    // Nothing may start a new output file between here and the end of the process.
    std::mem::forget(done);
}

/// Starts the thread that meets SIGINT, SIGTERM and SIGHUP: it removes the unfinished files,
/// then ends the process by the same signal, so the exit status is what the shell expects
/// (130 for Ctrl-C, 143 for SIGTERM).
pub fn on_signals() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                remove_unfinished();
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        });
        drop(spawned);
    }
}
