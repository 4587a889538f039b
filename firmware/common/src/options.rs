//! The generation flags every board understands, spelled as `host-tools run` spells them:
//! `--tokens 1,2,3 -n N --kv f32|f16|int8 --activations f32|int8 --speculate K --bits
//! --no-verify`, and the
//! console line every SD board reads: token ids or text, and those flags.
//!
//! A board reads them from wherever its words come from (QEMU's command line, a serial
//! console's line) and interprets the words left over itself (a file name, the prompt).

use core::fmt;

use picogpt_core::speculate::{DEFAULT_SPECULATE, MAX_SPECULATE};
use picogpt_core::{Activations, KvFormat};

use crate::prompt::{Input, Prompt, PromptError, Words, parse_tokens};
use crate::request::Request;

/// Longest line a board's console reads, in bytes.
pub const MAX_LINE: usize = 256;

/// The generation flags, with a board's defaults for those not given.
#[derive(Clone, Debug, PartialEq)]
pub struct Options<'a> {
    /// The prompt: token ids or text (none: the board's default, or `<|endoftext|>`).
    pub prompt: Input<'a>,
    /// Tokens to generate.
    pub n: usize,
    /// KV cache element format.
    pub kv: KvFormat,
    /// Kernel path for int8 weights.
    pub activations: Activations,
    /// Draft tokens per pass asked for (0: one token per pass); the RAM may allow fewer.
    pub speculate: usize,
    /// Print each step's logit bits.
    pub bits: bool,
    /// Check tensor CRCs during the first pass.
    pub verify: bool,
}

impl Options<'_> {
    /// Options with no prompt, `n` tokens, `kv` and `activations`, the host's draft length,
    /// CRC checks on, no bits.
    pub fn new(n: usize, kv: KvFormat, activations: Activations) -> Self {
        Self {
            prompt: Input::empty(),
            n,
            kv,
            activations,
            speculate: DEFAULT_SPECULATE,
            bits: false,
            verify: true,
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
    /// `--speculate` with something other than 0 to [`MAX_SPECULATE`].
    BadSpeculate(&'a str),
    /// A bad token list, or a text too long.
    Prompt(PromptError),
}

impl fmt::Display for OptionsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
            Self::BadCount(value) => write!(f, "-n takes a number of tokens, not '{value}'"),
            Self::BadKv(value) => write!(f, "--kv takes f32, f16 or int8, not '{value}'"),
            Self::BadActivations(value) => {
                write!(f, "--activations takes f32, int16 or int8, not '{value}'")
            }
            Self::BadSpeculate(value) => write!(
                f,
                "--speculate takes 0 to {MAX_SPECULATE} draft tokens per pass, not '{value}'"
            ),
            Self::Prompt(e) => write!(f, "{e}"),
        }
    }
}

/// Whether `word` is meant as a flag: `-x…` or `--…` (`-` or `-5` alone are text).
pub fn is_flag(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next() == Some('-') && chars.next().is_some_and(|c| c == '-' || c.is_ascii_alphabetic())
}

/// Reads the flags among `words` over `defaults`. Every other word goes, in order, to
/// `other`, with the remaining words (to take a value of its own flag from).
pub fn parse_options<'a, I, E>(
    words: I,
    defaults: Options<'a>,
    mut other: impl FnMut(&'a str, &mut I) -> Result<(), E>,
) -> Result<Options<'a>, E>
where
    I: Iterator<Item = &'a str>,
    E: From<OptionsError<'a>>,
{
    let mut options = defaults;
    let mut words = words;
    while let Some(word) = words.next() {
        let mut value = |flag| words.next().ok_or(OptionsError::MissingValue(flag));
        match word {
            "--tokens" => {
                let list = value("--tokens")?;
                options.prompt = Input::Tokens(parse_tokens(list).map_err(OptionsError::Prompt)?);
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
                    other => return Err(OptionsError::BadKv(other).into()),
                };
            }
            "--activations" => {
                let name = value("--activations")?;
                options.activations =
                    Activations::parse(name).ok_or(OptionsError::BadActivations(name))?;
            }
            "--speculate" => {
                let count = value("--speculate")?;
                options.speculate = count
                    .parse()
                    .ok()
                    .filter(|&k| k <= MAX_SPECULATE)
                    .ok_or(OptionsError::BadSpeculate(count))?;
            }
            "--bits" => options.bits = true,
            "--no-verify" => options.verify = false,
            word => other(word, &mut words)?,
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
    /// Both `--tokens` and a prompt typed as ids or text.
    TwoPrompts,
    /// The line is not UTF-8.
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
}

impl<'a> From<OptionsError<'a>> for LineError<'a> {
    fn from(e: OptionsError<'a>) -> Self {
        Self::Options(e)
    }
}

impl fmt::Display for LineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Options(e) => write!(f, "{e}"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag '{flag}'"),
            Self::TwoPrompts => write!(f, "give either --tokens or a prompt, not both"),
            Self::NotUtf8 { offset } => write!(f, "the line is not valid UTF-8 (byte {offset})"),
        }
    }
}

/// Reads a console line: a prompt and the generation flags. The words that are not flags
/// are the prompt: one comma-separated token-id list (`36235,39141 -n 4 --bits`) is token
/// ids, anything else is text, its words joined by single spaces in `text` (`Alan Turing
/// -n 4`). Without a prompt it is `default_prompt`.
pub fn parse_line<'a>(
    line: &'a [u8],
    defaults: Options<'a>,
    default_prompt: &[u32],
    text: &'a mut [u8],
) -> Result<Options<'a>, LineError<'a>> {
    let line =
        core::str::from_utf8(line).map_err(|e| LineError::NotUtf8 { offset: e.valid_up_to() })?;
    let mut words = Words::new(text);
    let mut first = None;
    let mut options = parse_options(line.split_whitespace(), defaults, |word, _| {
        if is_flag(word) {
            return Err(LineError::UnknownFlag(word));
        }
        first.get_or_insert(word);
        words.push(word).map_err(|e| LineError::Options(OptionsError::Prompt(e)))
    })?;
    let typed = matches!(&options.prompt, Input::Tokens(ids) if !ids.is_empty());
    options.prompt = match (first, words.count()) {
        (None, _) if typed => options.prompt,
        (None, _) => Input::Tokens(
            Prompt::from_slice(default_prompt)
                .map_err(|_| OptionsError::Prompt(PromptError::TooMany))?,
        ),
        (Some(_), _) if typed => return Err(LineError::TwoPrompts),
        (Some(list), 1) => match parse_tokens(list) {
            Ok(ids) => Input::Tokens(ids),
            Err(e @ PromptError::TooMany) => return Err(OptionsError::Prompt(e).into()),
            Err(_) => Input::Text(words.finish()),
        },
        (Some(_), _) => Input::Text(words.finish()),
    };
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
            speculate: self.speculate,
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
    activations.name()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    fn defaults() -> Options<'static> {
        Options::new(8, KvFormat::Int8, Activations::F32)
    }

    /// The flags of `line`, and the words left over.
    fn split(line: &str) -> Result<(Options<'_>, heapless::Vec<&str, 8>), OptionsError<'_>> {
        let mut rest = heapless::Vec::new();
        let options = parse_options(line.split(' '), defaults(), |word, _| {
            let _ = rest.push(word);
            Ok::<_, OptionsError<'_>>(())
        })?;
        Ok((options, rest))
    }

    /// `line` read over [`defaults`] with default prompt 9: its prompt and `-n`, or the error.
    fn line(line: &[u8]) -> Result<(Input<'_>, usize), LineError<'_>> {
        // Leaked so the joined text can outlive the call; a test's few bytes.
        let buf = std::boxed::Box::leak(std::boxed::Box::new([0u8; MAX_LINE]));
        parse_line(line, defaults(), &[9], buf).map(|o| (o.prompt, o.n))
    }

    fn tokens(ids: &[u32]) -> Input<'static> {
        Input::Tokens(Prompt::from_slice(ids).unwrap())
    }

    #[test]
    fn reads_flags_and_leaves_the_rest() {
        let (o, rest) =
            split("FILE --tokens 1,2 -n 4 --kv f16 --activations int8 --speculate 7 --bits --no-verify --icount")
                .unwrap();
        assert_eq!(o.prompt, tokens(&[1, 2]));
        assert_eq!(
            (o.n, o.kv, o.activations, o.speculate, o.bits, o.verify),
            (4, KvFormat::F16, Activations::Int8, 7, true, false)
        );
        assert_eq!(&rest[..], &["FILE", "--icount"]);
    }

    #[test]
    fn keeps_the_defaults() {
        let (o, rest) = split("36235,39141").unwrap();
        assert_eq!(
            (o.n, o.kv, o.activations, o.speculate, o.bits, o.verify),
            (8, KvFormat::Int8, Activations::F32, DEFAULT_SPECULATE, false, true)
        );
        assert_eq!(o.prompt, Input::empty());
        assert_eq!(&rest[..], &["36235,39141"]);
    }

    #[test]
    fn reads_console_lines() {
        assert_eq!(line(b"36235,39141 -n 4"), Ok((tokens(&[36235, 39141]), 4)));
        assert_eq!(line(b"  "), Ok((tokens(&[9]), 8)));
        assert_eq!(line(b"-n 2"), Ok((tokens(&[9]), 2)));
        assert_eq!(line(b"--tokens 5"), Ok((tokens(&[5]), 8)));
        assert_eq!(line(b"1 --x"), Err(LineError::UnknownFlag("--x")));
    }

    #[test]
    fn anything_but_a_token_list_is_text() {
        assert_eq!(
            line(b"  Alan   Turing -n 4 theorized  "),
            Ok((Input::Text("Alan Turing theorized"), 4))
        );
        for text in ["1 2", "1,x", "-5 degrees", "caf\u{e9}"] {
            assert_eq!(line(text.as_bytes()), Ok((Input::Text(text), 8)));
        }
        assert_eq!(line(b"--tokens 1 Alan"), Err(LineError::TwoPrompts));
        assert_eq!(line(b"Al\xffan"), Err(LineError::NotUtf8 { offset: 2 }));
    }

    #[test]
    fn rejects_bad_values() {
        let bad = |line: &'static str| split(line).err();
        assert_eq!(bad("-n"), Some(OptionsError::MissingValue("-n")));
        assert_eq!(bad("-n x"), Some(OptionsError::BadCount("x")));
        assert_eq!(bad("--kv f64"), Some(OptionsError::BadKv("f64")));
        assert_eq!(bad("--activations f16"), Some(OptionsError::BadActivations("f16")));
        assert_eq!(bad("--speculate 33"), Some(OptionsError::BadSpeculate("33")));
        assert_eq!(bad("--speculate -1"), Some(OptionsError::BadSpeculate("-1")));
        assert_eq!(bad("--speculate"), Some(OptionsError::MissingValue("--speculate")));
        assert_eq!(
            bad("--tokens 1,a"),
            Some(OptionsError::Prompt(PromptError::NotANumber { item: 2 }))
        );
    }

    #[test]
    fn tells_flags_from_text() {
        assert!(is_flag("-n") && is_flag("--kv") && is_flag("--"));
        assert!(!is_flag("-") && !is_flag("-5") && !is_flag("a-b"));
    }
}
