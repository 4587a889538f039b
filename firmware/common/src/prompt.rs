//! Prompts typed as token ids: `36235,39141,18765`.

use core::fmt;

/// Most prompt tokens a board accepts (GPT-2's context is 1024; a board's KV cache holds far
/// fewer positions).
pub const MAX_PROMPT: usize = 256;

/// picoGPT's example prompt, "Alan Turing theorized that computers would one day become", in
/// GPT-2 tokens: what a board runs when given none.
pub const DEFAULT_PROMPT: [u32; 10] = [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716];

/// Token ids of a prompt.
pub type Prompt = heapless::Vec<u32, MAX_PROMPT>;

/// Why a token list could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptError {
    /// An item is not a decimal number that fits a `u32`.
    NotANumber {
        /// 1-based position of the item in the list.
        item: usize,
    },
    /// More than [`MAX_PROMPT`] ids.
    TooMany,
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotANumber { item } => {
                write!(f, "token list item {item} is not a token id (give e.g. 36235,39141)")
            }
            Self::TooMany => write!(f, "more than {MAX_PROMPT} prompt tokens"),
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
}
