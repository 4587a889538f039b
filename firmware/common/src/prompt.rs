//! Prompts as typed: token ids (`36235,39141,18765`), or text that the board encodes itself
//! with the pack's tokenizer (core's `Model::encode`).

use core::fmt;

/// Most prompt tokens a board accepts, typed or encoded (GPT-2's context is 1024; a board's
/// KV cache holds far fewer positions in RAM).
pub const MAX_PROMPT: usize = 256;

/// Longest pre-tokenizer piece (a word, a run of digits or punctuation) a board encodes.
pub const MAX_PIECE_BYTES: usize = 256;

/// Words of BPE merge state `Model::encode` needs for a piece of [`MAX_PIECE_BYTES`]: two
/// per byte, plus two.
pub const BPE_SCRATCH_WORDS: usize = 2 * MAX_PIECE_BYTES + 2;

/// picoGPT's example prompt, "Alan Turing theorized that computers would one day become", in
/// GPT-2 tokens: what a board runs when given none.
pub const DEFAULT_PROMPT: [u32; 10] = [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716];

/// Token ids of a prompt.
pub type Prompt = heapless::Vec<u32, MAX_PROMPT>;

/// What the model continues, as the user gave it.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "no heap to box the ids in; an Input lives once, in the line's options"
)]
pub enum Input<'a> {
    /// Token ids; none starts from `<|endoftext|>`, as GPT-2 does.
    Tokens(Prompt),
    /// Text, encoded on the board; empty starts from `<|endoftext|>`.
    Text(&'a str),
}

impl Input<'_> {
    /// No prompt: generation starts from `<|endoftext|>`.
    pub const fn empty() -> Self {
        Self::Tokens(Prompt::new())
    }
}

/// Why a prompt could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptError {
    /// An item is not a decimal number that fits a `u32`.
    NotANumber {
        /// 1-based position of the item in the list.
        item: usize,
    },
    /// More than [`MAX_PROMPT`] ids.
    TooMany,
    /// The prompt's words do not fit the board's text buffer.
    TextTooLong {
        /// Bytes the buffer holds.
        max: usize,
    },
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotANumber { item } => {
                write!(f, "token list item {item} is not a token id (give e.g. 36235,39141)")
            }
            Self::TooMany => write!(f, "more than {MAX_PROMPT} prompt tokens"),
            Self::TextTooLong { max } => write!(f, "the prompt is longer than {max} bytes"),
        }
    }
}

/// Parses comma-separated token ids (spaces around items are ignored); an empty or blank
/// string is an empty prompt.
pub fn parse_tokens(list: &str) -> Result<Prompt, PromptError> {
    let mut prompt = Prompt::new();
    if list.trim().is_empty() {
        return Ok(prompt);
    }
    for (i, item) in list.split(',').enumerate() {
        let id = item.trim().parse().map_err(|_| PromptError::NotANumber { item: i + 1 })?;
        prompt.push(id).map_err(|_| PromptError::TooMany)?;
    }
    Ok(prompt)
}

/// A text prompt gathered word by word into a caller's buffer, the words joined by single
/// spaces: how a command line or console line that splits text at spaces gives it back.
pub struct Words<'a> {
    buf: &'a mut [u8],
    len: usize,
    count: usize,
}

impl<'a> Words<'a> {
    /// Gathers into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0, count: 0 }
    }

    /// Appends `word`, after a space unless it is the first.
    pub fn push(&mut self, word: &str) -> Result<(), PromptError> {
        let sep = usize::from(self.count > 0);
        let end = self.len + sep + word.len();
        let max = self.buf.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(PromptError::TextTooLong { max })?;
        let (space, text) = slot.split_at_mut(sep);
        space.fill(b' ');
        text.copy_from_slice(word.as_bytes());
        self.len = end;
        self.count += 1;
        Ok(())
    }

    /// How many words were pushed.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The joined text.
    pub fn finish(self) -> &'a str {
        let buf: &'a [u8] = self.buf;
        // Whole `str`s and ASCII spaces were copied in, so this is UTF-8.
        core::str::from_utf8(buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_rejects_garbage() {
        assert_eq!(parse_tokens("36235,39141").as_deref(), Ok(&[36235, 39141][..]));
        assert_eq!(parse_tokens(" 1 , 2 ").as_deref(), Ok(&[1, 2][..]));
        assert_eq!(parse_tokens("  ").map(|p| p.len()), Ok(0));
        assert_eq!(parse_tokens("1,,2"), Err(PromptError::NotANumber { item: 2 }));
        assert_eq!(parse_tokens("1,x"), Err(PromptError::NotANumber { item: 2 }));
        assert_eq!(parse_tokens("4294967296"), Err(PromptError::NotANumber { item: 1 }));
    }

    #[test]
    fn caps_the_prompt_length() {
        let mut long = heapless::String::<2048>::new();
        for _ in 0..=MAX_PROMPT {
            let _ = long.push_str("1,");
        }
        let _ = long.pop();
        assert_eq!(parse_tokens(&long), Err(PromptError::TooMany));
    }

    #[test]
    fn joins_words_with_single_spaces() {
        let mut buf = [0u8; 32];
        let mut words = Words::new(&mut buf);
        for word in ["Alan", "Turing", "théorisait"] {
            words.push(word).unwrap();
        }
        assert_eq!(words.count(), 3);
        assert_eq!(words.finish(), "Alan Turing théorisait");
        assert_eq!(Words::new(&mut [0u8; 4]).finish(), "");
    }

    #[test]
    fn text_longer_than_the_buffer_is_an_error() {
        let mut buf = [0u8; 8];
        let mut words = Words::new(&mut buf);
        words.push("four").unwrap();
        assert_eq!(words.push("more"), Err(PromptError::TextTooLong { max: 8 }));
        assert_eq!(words.finish(), "four");
    }
}
