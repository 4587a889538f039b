//! A console line as it is typed: bytes in (UTF-8 text included), what to echo out.

use crate::options::MAX_LINE;

/// A line typed at the console: bytes, checked for UTF-8 when it is read.
pub type Line = heapless::Vec<u8, MAX_LINE>;

/// What a typed byte did to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Return or newline: the line is complete.
    Enter,
    /// The byte was appended; echo it.
    Echo(u8),
    /// Backspace removed the last character; echo `\x08 \x08`.
    Erase,
    /// Nothing changed (a control byte, backspace on an empty line, or the line is full).
    Ignore,
}

/// Applies one typed byte to `line`.
pub fn edit(line: &mut Line, byte: u8) -> Edit {
    match byte {
        b'\r' | b'\n' => Edit::Enter,
        0x08 | 0x7f if erase_char(line) => Edit::Erase,
        0x20..=0x7e | 0x80..=0xff if line.push(byte).is_ok() => Edit::Echo(byte),
        _ => Edit::Ignore,
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

    fn typed(bytes: &[u8]) -> (Line, Vec<Edit>) {
        let mut line = Line::new();
        let edits = bytes.iter().map(|&b| edit(&mut line, b)).collect();
        (line, edits)
    }

    #[test]
    fn text_and_utf8_are_kept_and_control_bytes_dropped() {
        let (line, edits) = typed("a\té!".as_bytes());
        assert_eq!(&line[..], "aé!".as_bytes());
        assert_eq!(edits[1], Edit::Ignore);
        assert_eq!(typed(b"x\r").1[1], Edit::Enter);
    }

    #[test]
    fn backspace_removes_a_whole_character() {
        let bytes = ["aé€".as_bytes(), &[0x7f, 0x08]].concat();
        let (line, edits) = typed(&bytes);
        assert_eq!(&line[..], b"a");
        assert_eq!(&edits[edits.len() - 2..], &[Edit::Erase, Edit::Erase]);
        assert_eq!(typed(&[0x08]).1[0], Edit::Ignore);
    }

    #[test]
    fn a_full_line_takes_no_more() {
        let (line, edits) = typed(&[b'x'; MAX_LINE + 1]);
        assert_eq!(line.len(), MAX_LINE);
        assert_eq!(edits[MAX_LINE], Edit::Ignore);
    }
}
