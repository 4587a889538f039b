//! The text a run prints, formatted once here so the host, the emulator and the boards print
//! byte-identical lines.

use core::fmt;

use crate::logits::Candidate;

/// picoGPT's verbose line for one candidate: `#1. 10598 (' Rome'): -90.74231 ->  2.40%`
/// (`text` is the token's text when a tokenizer is at hand; without it the parenthesis is
/// left out).
pub fn write_candidate<W: fmt::Write>(
    w: &mut W,
    rank: usize,
    candidate: &Candidate,
    text: Option<&str>,
) -> fmt::Result {
    write!(w, "#{rank}. {}", candidate.token)?;
    if let Some(text) = text {
        write!(w, " ({})", PyRepr(text))?;
    }
    write!(w, ": {:.5} -> {:5.2}%", candidate.logit, candidate.prob * 100.0)
}

/// A string shown the way Python's `repr` shows it: single quotes unless the text contains
/// one and no double quote, backslash escapes for quotes, backslashes and control characters.
pub struct PyRepr<'a>(pub &'a str);

impl fmt::Display for PyRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = if self.0.contains('\'') && !self.0.contains('"') { '"' } else { '\'' };
        f.write_fmt(format_args!("{quote}"))?;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c == quote => write!(f, "\\{c}")?,
                c if (c as u32) < 0x100 && c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_fmt(format_args!("{c}"))?,
            }
        }
        f.write_fmt(format_args!("{quote}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(c: Candidate, text: Option<&str>) -> String {
        let mut s = String::new();
        write_candidate(&mut s, 1, &c, text).unwrap();
        s
    }

    #[test]
    fn matches_picogpt_verbose_format() {
        let c = Candidate { token: 10598, logit: -90.742_31, prob: 0.024 };
        assert_eq!(line(c, Some(" Rome")), "#1. 10598 (' Rome'): -90.74231 ->  2.40%");
        assert_eq!(line(c, None), "#1. 10598: -90.74231 ->  2.40%");
        let sure = Candidate { token: 13, logit: 3.5, prob: 1.0 };
        assert_eq!(line(sure, Some(".")), "#1. 13 ('.'): 3.50000 -> 100.00%");
    }

    #[test]
    fn escapes_like_python_repr() {
        assert_eq!(PyRepr("\n").to_string(), "'\\n'");
        assert_eq!(PyRepr("it's").to_string(), "\"it's\"");
        assert_eq!(PyRepr("'\"").to_string(), "'\\'\"'");
        assert_eq!(PyRepr("\u{1b}[").to_string(), "'\\x1b['");
        assert_eq!(PyRepr("\u{fffd}").to_string(), "'\u{fffd}'");
    }
}
