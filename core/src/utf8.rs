//! Printing token bytes as they come: a UTF-8 decoder that holds back a character split
//! across tokens instead of printing garbage.

/// Longest UTF-8 sequence.
const MAX_SEQ: usize = 4;

/// Turns a stream of byte chunks into text, emitting each complete character once and
/// replacing invalid sequences with U+FFFD (as Python's `errors="replace"` and Rust's
/// `from_utf8_lossy` do).
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: [u8; MAX_SEQ],
    len: usize,
}

impl Utf8Stream {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self { pending: [0; MAX_SEQ], len: 0 }
    }

    /// Feeds `bytes`; `emit` receives every piece of text that is complete so far.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&str)) {
        // Finish a character held back from the previous chunk, one byte at a time.
        while self.len > 0 {
            let Some((&b, rest)) = bytes.split_first() else { return };
            bytes = rest;
            self.pending[self.len] = b;
            self.len += 1;
            self.settle(emit);
        }
        loop {
            let (valid, error) = match core::str::from_utf8(bytes) {
                Ok(text) => (text, None),
                Err(e) => (
                    // Valid by construction of `valid_up_to`.
                    core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
                    Some((e.valid_up_to(), e.error_len())),
                ),
            };
            if !valid.is_empty() {
                emit(valid);
            }
            match error {
                None => return,
                Some((at, Some(bad))) => {
                    emit("\u{fffd}");
                    bytes = &bytes[at + bad..];
                }
                Some((at, None)) => {
                    // An incomplete character at the end: keep it for the next chunk.
                    let rest = &bytes[at..];
                    self.pending[..rest.len()].copy_from_slice(rest);
                    self.len = rest.len();
                    return;
                }
            }
        }
    }

    /// Emits whatever the held-back bytes decide: a complete character, or U+FFFD for an
    /// invalid prefix, re-examining the bytes after it; an incomplete character stays.
    fn settle(&mut self, emit: &mut impl FnMut(&str)) {
        while self.len > 0 {
            let (drop, text) = match core::str::from_utf8(&self.pending[..self.len]) {
                Ok(_) => (self.len, None),
                Err(e) if e.valid_up_to() > 0 => (e.valid_up_to(), None),
                Err(e) => match e.error_len() {
                    Some(bad) => (bad, Some("\u{fffd}")),
                    None => return,
                },
            };
            match text {
                Some(replacement) => emit(replacement),
                None => emit(core::str::from_utf8(&self.pending[..drop]).unwrap_or("")),
            }
            self.pending.copy_within(drop..self.len, 0);
            self.len -= drop;
        }
    }

    /// Ends the stream: an incomplete character still held back becomes U+FFFD.
    pub fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if self.len > 0 {
            emit("\u{fffd}");
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> String {
        let mut out = String::new();
        let mut stream = Utf8Stream::new();
        for chunk in chunks {
            stream.push(chunk, &mut |s| out.push_str(s));
        }
        stream.finish(&mut |s| out.push_str(s));
        out
    }

    #[test]
    fn holds_back_characters_split_across_chunks() {
        let bytes = "naïve 東京 🙂".as_bytes();
        for split in 0..bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(decode(&[a, b]), "naïve 東京 🙂", "split at {split}");
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&one_by_one), "naïve 東京 🙂");
    }

    #[test]
    fn replaces_invalid_bytes_like_from_utf8_lossy() {
        let cases: [&[u8]; 5] =
            [b"a\xffb", b"\xe6\x9d", b"\xe6\x9dz", b"\xf0\x9f\x99", b"ok\xc3\x28ok"];
        for bytes in cases {
            let expected = String::from_utf8_lossy(bytes);
            assert_eq!(decode(&[bytes]), expected, "{bytes:?} whole");
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(decode(&pieces), expected, "{bytes:?} byte by byte");
        }
    }
}
