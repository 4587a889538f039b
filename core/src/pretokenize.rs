//! GPT-2's pre-tokenizer: text split into the pieces BPE runs on, without a regex engine.
//!
//! The pattern is tiktoken's `r50k_base`:
//!
//! ```text
//! '(?:[sdmt]|ll|ve|re) | ␣?\p{L}+ | ␣?\p{N}+ | ␣?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
//! ```
//!
//! tried in that order at each position (leftmost alternative wins, each quantifier greedy).
//! `\s` is Unicode `White_Space` ([`char::is_whitespace`]); letters and numbers are the
//! general categories L* and N*.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_whitespace() {
        return Class::Space;
    }
    match c.general_category_group() {
        GeneralCategoryGroup::Letter => Class::Letter,
        GeneralCategoryGroup::Number => Class::Number,
        _ => Class::Other,
    }
}

/// The pieces of `text`, in order; together they are exactly `text`.
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces { rest: text }
}

/// Iterator over the pre-tokenizer's pieces (see [`pieces`]).
#[derive(Clone, Debug)]
pub struct Pieces<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let len = piece_len(self.rest);
        let (piece, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(piece)
    }
}

/// Byte length of the piece at the start of (non-empty) `s`.
fn piece_len(s: &str) -> usize {
    if let Some(n) = contraction(s) {
        return n;
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
    let (skip, body) = match s.strip_prefix(' ') {
        Some(after) => (1, after),
        None => (0, s),
    };
    if let Some(first) = body.chars().next() {
        let c = class(first);
        if c != Class::Space {
            return skip + run_len(body, |x| class(x) == c);
        }
    }
    // `\s+(?!\S)`: the whitespace run, minus its last character when a non-space follows.
    let run = run_len(s, char::is_whitespace);
    if run == s.len() {
        return run;
    }
    let last = s[..run].chars().next_back().map_or(0, char::len_utf8);
    if run > last {
        return run - last;
    }
    // `\s+` (here a single whitespace character before a non-space).
    run
}

/// Byte length of the leading run of characters satisfying `keep`.
fn run_len(s: &str, keep: impl Fn(char) -> bool) -> usize {
    s.char_indices().find(|&(_, c)| !keep(c)).map_or(s.len(), |(i, _)| i)
}

/// `'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d` at the start of `s` (case-sensitive, as GPT-2's).
fn contraction(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('\'')?;
    ["s", "d", "m", "t", "ll", "ve", "re"]
        .iter()
        .find(|suffix| rest.starts_with(**suffix))
        .map(|suffix| 1 + suffix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        pieces(s).collect()
    }

    #[test]
    fn splits_words_numbers_and_punctuation() {
        assert_eq!(
            split("Hello world, it's 2024!"),
            ["Hello", " world", ",", " it", "'s", " 2024", "!"]
        );
        assert_eq!(split("we'll they've I'M"), ["we", "'ll", " they", "'ve", " I", "'", "M"]);
    }

    #[test]
    fn whitespace_runs_leave_one_space_for_the_next_word() {
        assert_eq!(split("a   b"), ["a", "  ", " b"]);
        assert_eq!(split("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(split("a \n b"), ["a", " \n", " b"]);
        assert_eq!(split("end   "), ["end", "   "]);
        assert_eq!(split("\tx"), ["\t", "x"]);
    }

    #[test]
    fn unicode_letters_numbers_and_symbols() {
        assert_eq!(split("café 東京 ٣٤ 🙂🙂"), ["café", " 東京", " ٣٤", " 🙂🙂"]);
    }
}
