//! The guest's command line, as QEMU passes it through semihosting: the program name, then
//! `FILE`, the prompt's words and `host-tools run`'s generation flags, plus `--kv-file PATH`
//! and `--icount` (`--check-kernels` alone is handled before: see `main`).

use core::fmt;

use picogpt_board::options::is_flag;
use picogpt_board::{DEFAULT_TOKENS, Input, Options, OptionsError, Words, parse_options};
use picogpt_core::{Activations, KvFormat};

/// One line of help, printed with every argument error.
pub const USAGE: &str = "usage: picogpt FILE [PROMPT WORDS...] [--tokens 1,2,3] [-n N] \
                         [--kv f32|f16|int8] [--activations f32|int16|int8] [--kv-file PATH] \
                         [--speculate K] [--bits] [--no-verify] [--icount], or picogpt --check-kernels";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub struct Args<'a> {
    /// The packed file, relative to QEMU's working directory.
    pub file: &'a str,
    /// The generation flags and the prompt: text (the words after `FILE` that are not flags,
    /// joined by single spaces) or `--tokens`; defaults as `host-tools run`'s (f32 KV and
    /// activations, 40 tokens, `<|endoftext|>` without a prompt).
    pub options: Options<'a>,
    /// Host file for the KV positions the RAM cannot hold; opened only when needed.
    pub kv_file: Option<&'a str>,
    /// QEMU runs with `-icount shift=0`: report timer ticks as instructions.
    pub icount: bool,
}

/// A command line that cannot be followed.
#[derive(Debug, PartialEq)]
pub enum ArgsError<'a> {
    /// `--help`: not an error, but nothing to run.
    Help,
    /// No packed file given.
    MissingFile,
    /// A flag this firmware does not know.
    UnknownFlag(&'a str),
    /// Both `--tokens` and a text prompt.
    TwoPrompts,
    /// A generation flag's problem.
    Options(OptionsError<'a>),
}

impl<'a> From<OptionsError<'a>> for ArgsError<'a> {
    fn from(e: OptionsError<'a>) -> Self {
        Self::Options(e)
    }
}

impl fmt::Display for ArgsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => write!(f, "{USAGE}"),
            Self::MissingFile => write!(f, "no packed file given"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag '{flag}'"),
            Self::TwoPrompts => write!(f, "give either a prompt text or --tokens, not both"),
            Self::Options(e) => write!(f, "{e}"),
        }
    }
}

/// Reads the command line (its first word is the program's name); the prompt's words are
/// joined in `text`.
pub fn parse<'a>(line: &'a str, text: &'a mut [u8]) -> Result<Args<'a>, ArgsError<'a>> {
    let words = line.split(' ').filter(|w| !w.is_empty()).skip(1);
    let defaults = Options::new(DEFAULT_TOKENS, KvFormat::F32, Activations::F32);
    let (mut file, mut kv_file, mut icount) = (None, None, false);
    let mut prompt = Words::new(text);
    let mut options = parse_options(words, defaults, |word, rest| {
        match word {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--icount" => icount = true,
            "--kv-file" => {
                kv_file = Some(rest.next().ok_or(OptionsError::MissingValue("--kv-file"))?);
            }
            flag if is_flag(flag) => return Err(ArgsError::UnknownFlag(flag)),
            path if file.is_none() => file = Some(path),
            word => prompt.push(word).map_err(OptionsError::Prompt)?,
        }
        Ok(())
    })?;
    let file = file.ok_or(ArgsError::MissingFile)?;
    if prompt.count() > 0 {
        if options.prompt != Input::empty() {
            return Err(ArgsError::TwoPrompts);
        }
        options.prompt = Input::Text(prompt.finish());
    }
    Ok(Args { file, options, kv_file, icount })
}
