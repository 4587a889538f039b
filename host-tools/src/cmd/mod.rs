//! One module per subcommand: its arguments and what it prints.

pub mod bench;
pub mod download;
pub mod eval;
pub mod info;
pub mod pack;
pub mod reference;
pub mod run;
pub mod synth;
pub mod tokens;
pub mod uf2;
pub mod verify;

use picogpt_core::display::write_candidate;
use picogpt_core::{Activations, Candidate};

use host_tools::report::TopEntry;

/// picoGPT's verbose line for a candidate, through core's formatter (what a board prints).
pub fn candidate_line(rank: usize, entry: &TopEntry) -> String {
    let candidate = Candidate { token: entry.id, logit: entry.logit, prob: entry.prob as f32 };
    let mut line = String::new();
    // Writing to a String cannot fail.
    let _ = write_candidate(&mut line, rank, &candidate, entry.text.as_deref());
    line
}

/// An `--activations` value: `f32`, `int16` or `int8`.
pub fn parse_activations(name: &str) -> Result<Activations, String> {
    Activations::parse(name).ok_or_else(|| format!("{name:?} is not f32, int16 or int8"))
}

/// Token ids as `1,2,3`.
pub fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
