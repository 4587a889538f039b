//! The guest's command line, as QEMU passes it through semihosting: the program name, the
//! prompt's words and `host-tools run`'s generation flags, plus `--icount`. (`--sd IMG` is the
//! runner's: it becomes QEMU's SD card.)

use core::fmt;

use picogpt_board::options::is_flag;
use picogpt_board::{DEFAULT_TOKENS, Input, Options, OptionsError, Words, parse_options};
use picogpt_core::{Activations, KvFormat};

/// One line of help, printed with every argument error.
pub const USAGE: &str = "usage: picogpt --sd IMG [PROMPT WORDS...] [--tokens 1,2,3] [-n N] \
                         [--kv f32|f16|int8] [--activations f32|int8] [--speculate K] [--bits] \
                         [--no-verify] [--icount]";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub struct Args<'a> {
    /// The generation flags and the prompt: text (the words that are not flags, joined by
    /// single spaces) or `--tokens`; defaults as `host-tools run`'s (f32 KV and activations,
    /// 40 tokens, `<|endoftext|>` without a prompt).
    pub options: Options<'a>,
    /// QEMU runs with `-icount shift=0`: report instructions.
    pub icount: bool,
}

/// A command line that cannot be followed.
#[derive(Debug, PartialEq)]
pub enum ArgsError<'a> {
    /// `--help`: not an error, but nothing to run.
    Help,
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
    let mut icount = false;
    let mut prompt = Words::new(text);
    let mut options = parse_options(words, defaults, |word, _| {
        match word {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--icount" => icount = true,
            flag if is_flag(flag) => return Err(ArgsError::UnknownFlag(flag)),
            word => prompt.push(word).map_err(OptionsError::Prompt)?,
        }
        Ok(())
    })?;
    if prompt.count() > 0 {
        if options.prompt != Input::empty() {
            return Err(ArgsError::TwoPrompts);
        }
        options.prompt = Input::Text(prompt.finish());
    }
    Ok(Args { options, icount })
}
