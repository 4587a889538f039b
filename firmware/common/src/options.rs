//! The generation flags every board understands, spelled as `host-tools run` spells them:
//! `--tokens 1,2,3 -n N --kv f32|f16|int8 --activations f32|int8 --bits --no-verify`.
//!
//! A board reads them from wherever its words come from (QEMU's command line, a serial
//! console's line) and interprets the words left over itself (a file name, a bare token list).

use core::fmt;

use picogpt_core::{Activations, KvFormat};

use crate::prompt::{Prompt, PromptError, parse_tokens};
use crate::session::Request;

/// Most words a board may interpret itself.
pub const MAX_REST: usize = 4;

/// The generation flags, with a board's defaults for those not given.
#[derive(Clone, Debug, PartialEq)]
pub struct Options<'a> {
    /// Prompt token ids (empty: the board's default, or `<|endoftext|>`).
    pub prompt: Prompt,
    /// Tokens to generate.
    pub n: usize,
    /// KV cache element format.
    pub kv: KvFormat,
    /// Kernel path for int8 weights.
    pub activations: Activations,
    /// Print each step's logit bits.
    pub bits: bool,
    /// Check tensor CRCs during the first pass.
    pub verify: bool,
    /// Words not understood here, in order.
    pub rest: heapless::Vec<&'a str, MAX_REST>,
}

impl Options<'_> {
    /// Options with no prompt, `n` tokens, `kv` and `activations`, CRC checks on, no bits.
    pub fn new(n: usize, kv: KvFormat, activations: Activations) -> Self {
        Self {
            prompt: Prompt::new(),
            n,
            kv,
            activations,
            bits: false,
            verify: true,
            rest: heapless::Vec::new(),
        }
    }
}

/// A flag that cannot be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsError<'a> {
    /// A flag given without its value.
    MissingValue(&'static str),
    /// `-n` with something other than a count.
    BadCount(&'a str),
    /// `--kv` with an unknown format.
    BadKv(&'a str),
    /// `--activations` with an unknown path.
    BadActivations(&'a str),
    /// A bad token list.
    Prompt(PromptError),
    /// More than [`MAX_REST`] other words.
    TooManyWords,
}

impl fmt::Display for OptionsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
            Self::BadCount(value) => write!(f, "-n takes a number of tokens, not '{value}'"),
            Self::BadKv(value) => write!(f, "--kv takes f32, f16 or int8, not '{value}'"),
            Self::BadActivations(value) => {
                write!(f, "--activations takes f32 or int8, not '{value}'")
            }
            Self::Prompt(e) => write!(f, "{e}"),
            Self::TooManyWords => write!(f, "too many arguments"),
        }
    }
}

/// Reads the flags among `words` over `defaults`; other words go to [`Options::rest`].
pub fn parse_options<'a>(
    words: impl IntoIterator<Item = &'a str>,
    defaults: Options<'a>,
) -> Result<Options<'a>, OptionsError<'a>> {
    let mut options = defaults;
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let mut value = |flag| words.next().ok_or(OptionsError::MissingValue(flag));
        match word {
            "--tokens" => {
                options.prompt = parse_tokens(value("--tokens")?).map_err(OptionsError::Prompt)?;
            }
            "-n" => {
                let count = value("-n")?;
                options.n = count.parse().map_err(|_| OptionsError::BadCount(count))?;
            }
            "--kv" => {
                options.kv = match value("--kv")? {
                    "f32" => KvFormat::F32,
                    "f16" => KvFormat::F16,
                    "int8" => KvFormat::Int8,
                    other => return Err(OptionsError::BadKv(other)),
                };
            }
            "--activations" => {
                options.activations = match value("--activations")? {
                    "f32" => Activations::F32,
                    "int8" => Activations::Int8,
                    other => return Err(OptionsError::BadActivations(other)),
                };
            }
            "--bits" => options.bits = true,
            "--no-verify" => options.verify = false,
            other => options.rest.push(other).map_err(|_| OptionsError::TooManyWords)?,
        }
    }
    Ok(options)
}

/// A line typed at a board's serial console that cannot be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError<'a> {
    /// A generation flag's problem.
    Options(OptionsError<'a>),
    /// A flag no board knows.
    UnknownFlag(&'a str),
    /// A word after the token list.
    Unexpected(&'a str),
}

impl fmt::Display for LineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Options(e) => write!(f, "{e}"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag '{flag}'"),
            Self::Unexpected(word) => write!(f, "unexpected '{word}' after the token ids"),
        }
    }
}

/// Reads a console line: token ids, comma-separated, and the generation flags, e.g.
/// `36235,39141 -n 4 --bits`. Without ids the prompt is `default_prompt`.
pub fn parse_line<'a>(
    line: &'a str,
    defaults: Options<'a>,
    default_prompt: &[u32],
) -> Result<Options<'a>, LineError<'a>> {
    let mut options =
        parse_options(line.split_whitespace(), defaults).map_err(LineError::Options)?;
    let mut ids = None;
    for &word in &options.rest {
        match word {
            flag if flag.starts_with('-') => return Err(LineError::UnknownFlag(flag)),
            list if ids.is_none() => ids = Some(list),
            extra => return Err(LineError::Unexpected(extra)),
        }
    }
    let prompt = match ids {
        Some(list) => parse_tokens(list),
        None if options.prompt.is_empty() => {
            Prompt::from_slice(default_prompt).map_err(|_| PromptError::TooMany)
        }
        None => Ok(options.prompt.clone()),
    };
    options.prompt = prompt.map_err(|e| LineError::Options(OptionsError::Prompt(e)))?;
    options.rest.clear();
    Ok(options)
}

impl<'a> Options<'a> {
    /// The request these options make, with the board's read size and batch limit.
    pub fn request(&'a self, chunk_bytes: usize, max_batch: usize) -> Request<'a> {
        Request {
            prompt: &self.prompt,
            n: self.n,
            kv: self.kv,
            chunk_bytes,
            activations: self.activations,
            max_batch,
            verify: self.verify,
            bits: self.bits,
        }
    }
}

/// The name `--kv` gives a format.
pub fn kv_name(format: KvFormat) -> &'static str {
    match format {
        KvFormat::F32 => "f32",
        KvFormat::F16 => "f16",
        KvFormat::Int8 => "int8",
    }
}

/// The name `--activations` gives a path.
pub fn activations_name(activations: Activations) -> &'static str {
    match activations {
        Activations::F32 => "f32",
        Activations::Int8 => "int8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Options<'static> {
        Options::new(8, KvFormat::Int8, Activations::F32)
    }

    #[test]
    fn reads_flags_and_leaves_the_rest() {
        let line = "FILE --tokens 1,2 -n 4 --kv f16 --activations int8 --bits --no-verify --icount";
        let o = parse_options(line.split(' '), defaults()).unwrap();
        assert_eq!(&o.prompt[..], &[1, 2]);
        assert_eq!(
            (o.n, o.kv, o.activations, o.bits, o.verify),
            (4, KvFormat::F16, Activations::Int8, true, false)
        );
        assert_eq!(&o.rest[..], &["FILE", "--icount"]);
    }

    #[test]
    fn keeps_the_defaults() {
        let o = parse_options("36235,39141".split(' '), defaults()).unwrap();
        assert_eq!(
            (o.n, o.kv, o.activations, o.bits, o.verify),
            (8, KvFormat::Int8, Activations::F32, false, true)
        );
        assert!(o.prompt.is_empty());
        assert_eq!(&o.rest[..], &["36235,39141"]);
    }

    #[test]
    fn reads_console_lines() {
        let o = parse_line("36235,39141 -n 4", defaults(), &[9]).unwrap();
        assert_eq!((&o.prompt[..], o.n), (&[36235, 39141][..], 4));
        assert_eq!(&parse_line("  ", defaults(), &[9]).unwrap().prompt[..], &[9]);
        assert_eq!(&parse_line("--tokens 5", defaults(), &[9]).unwrap().prompt[..], &[5]);
        assert_eq!(parse_line("1 2", defaults(), &[9]), Err(LineError::Unexpected("2")));
        assert_eq!(parse_line("1 --x", defaults(), &[9]), Err(LineError::UnknownFlag("--x")));
    }

    #[test]
    fn rejects_bad_values() {
        let bad = |line: &'static str| parse_options(line.split(' '), defaults()).err();
        assert_eq!(bad("-n"), Some(OptionsError::MissingValue("-n")));
        assert_eq!(bad("-n x"), Some(OptionsError::BadCount("x")));
        assert_eq!(bad("--kv f64"), Some(OptionsError::BadKv("f64")));
        assert_eq!(bad("--activations f16"), Some(OptionsError::BadActivations("f16")));
        assert_eq!(
            bad("--tokens 1,a"),
            Some(OptionsError::Prompt(PromptError::NotANumber { item: 2 }))
        );
        assert_eq!(bad("a b c d e"), Some(OptionsError::TooManyWords));
    }
}
