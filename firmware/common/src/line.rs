//! A console line as it is typed: bytes in (UTF-8 text included), what to echo out.

use crate::options::MAX_LINE;

/// A line typed at the console: bytes, checked for UTF-8 when it is read.
pub type Line = heapless::Vec<u8, MAX_LINE>;

/// What a typed byte did to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Return or newline: the line is complete ([`Editor::take`] it).
    Enter,
    /// The byte was appended; echo it.
    Echo(u8),
    /// Backspace removed the last character; echo `\x08 \x08`.
    Erase,
    /// Nothing changed (a control byte, backspace on an empty line, the line is full, or the
    /// newline of a CR LF pair).
    Ignore,
}

/// The line being typed. CR, LF and CR LF each end a line once, so a terminal that sends CR
/// LF does not queue an empty line (a default run) after every line.
#[derive(Clone, Debug, Default)]
pub struct Editor {
    line: Line,
    after_cr: bool,
}

impl Editor {
    /// An empty line.
    pub const fn new() -> Self {
        Self { line: Line::new(), after_cr: false }
    }

    /// Applies one typed byte.
    pub fn edit(&mut self, byte: u8) -> Edit {
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => Edit::Ignore,
            b'\r' | b'\n' => Edit::Enter,
            0x08 | 0x7f if erase_char(&mut self.line) => Edit::Erase,
            0x20..=0x7e | 0x80..=0xff if self.line.push(byte).is_ok() => Edit::Echo(byte),
            _ => Edit::Ignore,
        }
    }

    /// The line typed so far, leaving an empty one.
    pub fn take(&mut self) -> Line {
        core::mem::take(&mut self.line)
    }
}

/// Removes the last character (all of a UTF-8 sequence); false on an empty line.
fn erase_char(line: &mut Line) -> bool {
    while let Some(byte) = line.pop() {
        // Continuation bytes are 0b10xx_xxxx; anything else starts a character.
        if byte & 0xc0 != 0x80 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    /// The lines `bytes` type, and each byte's edit.
    fn typed(bytes: &[u8]) -> (Vec<Line>, Vec<Edit>) {
        let mut editor = Editor::new();
        let mut lines = Vec::new();
        let edits = bytes
            .iter()
            .map(|&b| {
                let edit = editor.edit(b);
                if edit == Edit::Enter {
                    lines.push(editor.take());
                }
                edit
            })
            .collect();
        lines.push(editor.take());
        (lines, edits)
    }

    #[test]
    fn text_and_utf8_are_kept_and_control_bytes_dropped() {
        let (lines, edits) = typed("a\té!".as_bytes());
        assert_eq!(&lines[0][..], "aé!".as_bytes());
        assert_eq!(edits[1], Edit::Ignore);
        assert_eq!(typed(b"x\r").1[1], Edit::Enter);
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let (lines, _) = typed(b"one\r\ntwo\rthree\nfour\r\n\r\n");
        let lines: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
        // The last CR LF is an empty line of its own: Enter pressed twice.
        assert_eq!(lines, [&b"one"[..], b"two", b"three", b"four", b"", b""]);
        // LF CR is two line ends (no terminal sends it, but nothing is lost).
        assert_eq!(typed(b"a\n\r").0.len(), 3);
    }

    #[test]
    fn backspace_removes_a_whole_character() {
        let bytes = ["aé€".as_bytes(), &[0x7f, 0x08]].concat();
        let (lines, edits) = typed(&bytes);
        assert_eq!(&lines[0][..], b"a");
        assert_eq!(&edits[edits.len() - 2..], &[Edit::Erase, Edit::Erase]);
        assert_eq!(typed(&[0x08]).1[0], Edit::Ignore);
    }

    #[test]
    fn a_full_line_takes_no_more() {
        let (lines, edits) = typed(&[b'x'; MAX_LINE + 1]);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(edits[MAX_LINE], Edit::Ignore);
    }
}
