//! A token's text as the host shows it: its bytes decoded the way `String::from_utf8_lossy`
//! decodes them, into a caller's buffer instead of a heap string.

use picogpt_core::format::MAX_TOKEN_BYTES;

/// Bytes of the text of the longest token: each byte may become a 3-byte U+FFFD.
pub const TEXT_BYTES: usize = 3 * MAX_TOKEN_BYTES as usize;

/// `bytes` as UTF-8 text, every invalid sequence replaced by one U+FFFD, exactly as
/// `String::from_utf8_lossy` does. Any token (at most `MAX_TOKEN_BYTES`) fits `buf`; the text
/// of longer input is cut at the last character that fits.
pub fn lossy<'b>(bytes: &[u8], buf: &'b mut [u8; TEXT_BYTES]) -> &'b str {
    let mut len = 0;
    'fill: for chunk in bytes.utf8_chunks() {
        let replacement = if chunk.invalid().is_empty() { "" } else { "\u{fffd}" };
        for c in chunk.valid().chars().chain(replacement.chars()) {
            let Some(slot) = buf.get_mut(len..len + c.len_utf8()) else { break 'fill };
            c.encode_utf8(slot);
            len += c.len_utf8();
        }
    }
    // Only whole characters were written.
    core::str::from_utf8(buf.get(..len).unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::String;

    use super::*;

    #[test]
    fn matches_from_utf8_lossy() {
        let cases: [&[u8]; 6] =
            [b"hello", b" \xe2\x80", b"\xff\xfe", b"a\xe2\x82\xacb", b"\xf0\x9f\x98", b""];
        for bytes in cases {
            let mut buf = [0u8; TEXT_BYTES];
            assert_eq!(lossy(bytes, &mut buf), String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn the_longest_invalid_token_fits() {
        let bytes = [0xffu8; MAX_TOKEN_BYTES as usize];
        let mut buf = [0u8; TEXT_BYTES];
        assert_eq!(lossy(&bytes, &mut buf), String::from_utf8_lossy(&bytes));
    }
}
