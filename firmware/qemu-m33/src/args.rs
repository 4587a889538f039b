//! The guest's command line, as QEMU passes it through semihosting: the program name, then
//! `FILE` and `host-tools run`'s generation flags, plus `--icount`.

use core::fmt;

use picogpt_board::session::DEFAULT_TOKENS;
use picogpt_board::{Options, OptionsError, parse_options};
use picogpt_core::{Activations, KvFormat};

/// One line of help, printed with every argument error.
pub const USAGE: &str = "usage: picogpt FILE [--tokens 1,2,3] [-n N] [--kv f32|f16|int8] \
                         [--activations f32|int8] [--bits] [--no-verify] [--icount]";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub struct Args<'a> {
    /// The packed file, relative to QEMU's working directory.
    pub file: &'a str,
    /// The generation flags; defaults as `host-tools run`'s (f32 KV and activations, 40
    /// tokens, `<|endoftext|>` without `--tokens`).
    pub options: Options<'a>,
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
    /// A second file or a text prompt.
    Unexpected(&'a str),
    /// A generation flag's problem.
    Options(OptionsError<'a>),
}

impl fmt::Display for ArgsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => write!(f, "{USAGE}"),
            Self::MissingFile => write!(f, "no packed file given"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag '{flag}'"),
            Self::Unexpected(arg) => {
                write!(f, "unexpected argument '{arg}' (give the prompt as --tokens 1,2,3)")
            }
            Self::Options(e) => write!(f, "{e}"),
        }
    }
}

/// Reads the command line (its first word is the program's name).
pub fn parse(line: &str) -> Result<Args<'_>, ArgsError<'_>> {
    let words = line.split(' ').filter(|w| !w.is_empty()).skip(1);
    let defaults = Options::new(DEFAULT_TOKENS, KvFormat::F32, Activations::F32);
    let options = parse_options(words, defaults).map_err(ArgsError::Options)?;
    let (mut file, mut icount) = (None, false);
    for &word in &options.rest {
        match word {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--icount" => icount = true,
            flag if flag.starts_with('-') => return Err(ArgsError::UnknownFlag(flag)),
            path if file.is_none() => file = Some(path),
            extra => return Err(ArgsError::Unexpected(extra)),
        }
    }
    let file = file.ok_or(ArgsError::MissingFile)?;
    Ok(Args { file, options, icount })
}
