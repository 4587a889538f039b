//! One module per subcommand: its arguments and what it prints.

pub mod bench;
pub mod download;
pub mod eval;
pub mod flash_pack;
pub mod info;
pub mod pack;
pub mod reference;
pub mod run;
pub mod synth;
pub mod tokens;
pub mod uf2;
pub mod verify;

use std::path::Path;

use anyhow::{Result, anyhow};
use host_tools::file_storage::FileStorage;
use host_tools::guard;
use host_tools::report::TopEntry;
use picogpt_core::display::write_candidate;
use picogpt_core::{Activations, Candidate, Model};

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

/// Token ids as people type them: `464,3290`, `"464, 3290"`, `464, 3290` (two arguments).
#[derive(Clone, Debug)]
pub struct TokenIds(pub Vec<u32>);

/// Parses [`TokenIds`]: numbers separated by commas and/or spaces.
pub fn token_ids(text: &str) -> Result<TokenIds, String> {
    let ids = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|piece| !piece.is_empty())
        .map(|id| {
            id.parse().map_err(|_| format!("{id:?} is not a token id (a number such as 464)"))
        })
        .collect::<Result<Vec<u32>, _>>()?;
    if ids.is_empty() {
        return Err("no token ids: give ids such as 464,3290".to_owned());
    }
    Ok(TokenIds(ids))
}

/// The prompt-as-ids and length flags of `run` and `reference`, with picoGPT's default length.
#[derive(clap::Args)]
pub struct Generation {
    /// Prompt as token ids instead of text, comma-separated.
    #[arg(long, value_parser = token_ids)]
    pub tokens: Option<TokenIds>,
    /// Tokens to generate (`run` also stops at <|endoftext|>).
    #[arg(
        short = 'n',
        long,
        visible_alias = "n_tokens_to_generate",
        default_value_t = 40,
        value_parser = at_least_one
    )]
    pub n_tokens_to_generate: usize,
}

/// A count that must be at least 1 (`-n`, `--batch`, `--chunk-bytes`, `--repeats`, …).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// The pack at `path`, opened after [`guard::pack_file`]'s checks, for the commands that read
/// a pack's manifest or tokenizer (`info`, `verify`, `encode`, `decode`).
pub fn open_pack(path: &Path) -> Result<Model<FileStorage>> {
    guard::pack_file(path)?;
    let storage = FileStorage::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Model::open(storage).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `text` as one shell word, for the commands an error suggests: as is when it is plain,
/// else in single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c));
    if plain { text.to_owned() } else { format!("'{}'", text.replace('\'', "'\\''")) }
}
