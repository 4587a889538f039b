//! GPT-2's byte-level BPE on the device, over the pack's tokenizer sections.
//!
//! Encoding follows tiktoken exactly: the pre-tokenizer's pieces, each looked up whole first,
//! otherwise merged pairwise, always merging the adjacent pair whose concatenated bytes form
//! the lowest-ranked token (GPT-2's rank is its id), leftmost first on ties. Token bytes are
//! found through a hash index in storage; nothing is held in RAM but the caller's buffers.

use crate::error::{Error, FormatError};
use crate::format::{EMPTY_SLOT, INDEX_SLOT_BYTES, MAX_TOKEN_BYTES, TokenizerHead, token_hash};
use crate::model::Model;
use crate::pretokenize::pieces;
use crate::storage::Storage;
use crate::stream::Source;

/// No merge: the rank of a pair whose bytes are not a token.
const NO_RANK: u32 = u32::MAX;

impl<S: Storage> Model<S> {
    /// The tokenizer sections, if the pack has them.
    pub fn tokenizer(&self) -> Option<&TokenizerHead> {
        self.layout.tokenizer()
    }

    /// The bytes of token `id`, copied into `buf` (at most `max_token_bytes` long).
    pub fn token_bytes<'b>(
        &mut self,
        id: u32,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], Error<S::Error>> {
        let head = *self.layout.tokenizer().ok_or(Error::NoTokenizer)?;
        let vocab = self.layout.config().vocab_size;
        if id >= vocab {
            return Err(Error::TokenOutOfRange { token: id, vocab });
        }
        let mut bpe = Bpe { src: &mut self.src, head, vocab };
        let (offset, len) = bpe.token_range(id)?;
        if buf.len() < len {
            return Err(Error::BufferTooSmall {
                what: "token bytes",
                needed: len,
                given: buf.len(),
            });
        }
        bpe.src.read_exact(offset, &mut buf[..len], None)?;
        Ok(&buf[..len])
    }

    /// Encodes UTF-8 `text` into token ids in `out`, returning how many were written.
    ///
    /// `scratch` holds the merge state of one pre-tokenizer piece: 2 words per byte plus 2,
    /// so 514 words cover pieces of 256 bytes; a longer piece is a `BufferTooSmall` error.
    pub fn encode(
        &mut self,
        text: &[u8],
        scratch: &mut [u32],
        out: &mut [u32],
    ) -> Result<usize, Error<S::Error>> {
        let head = *self.layout.tokenizer().ok_or(Error::NoTokenizer)?;
        let text = core::str::from_utf8(text)
            .map_err(|e| Error::InvalidUtf8 { offset: e.valid_up_to() })?;
        let mut bpe = Bpe { src: &mut self.src, head, vocab: self.layout.config().vocab_size };
        let mut written = 0;
        for piece in pieces(text) {
            bpe.encode_piece(piece.as_bytes(), scratch, &mut |id| {
                let slot = out.get_mut(written).ok_or(Error::BufferTooSmall {
                    what: "token buffer",
                    needed: written + 1,
                    given: written,
                })?;
                *slot = id;
                written += 1;
                Ok(())
            })?;
        }
        Ok(written)
    }
}

/// Lookups in the tokenizer sections.
struct Bpe<'a, S> {
    src: &'a mut Source<S>,
    head: TokenizerHead,
    vocab: u32,
}

impl<S: Storage> Bpe<'_, S> {
    /// File offset and length of token `id`'s bytes, checked against the section.
    fn token_range(&mut self, id: u32) -> Result<(u64, usize), Error<S::Error>> {
        let mut raw = [0u8; 8];
        self.src.read_exact(self.head.vocab_offset + 4 * u64::from(id), &mut raw, None)?;
        let start = u64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]));
        let end = u64::from(u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]));
        let blob = self.head.vocab_offset + 4 * (u64::from(self.vocab) + 1);
        let fits = start <= end
            && end - start <= u64::from(self.head.max_token_bytes)
            && blob + end <= self.head.vocab_offset + self.head.vocab_len;
        if !fits {
            return Err(FormatError::TokenizerData { entry: id }.into());
        }
        Ok((blob + start, (end - start) as usize))
    }

    /// The id of the token whose bytes are exactly `bytes`, if there is one.
    fn lookup(&mut self, bytes: &[u8]) -> Result<Option<u32>, Error<S::Error>> {
        if bytes.len() > self.head.max_token_bytes as usize {
            return Ok(None);
        }
        let hash = token_hash(bytes);
        let mask = self.head.index_slots - 1;
        let mut slot = hash & mask;
        let mut candidate = [0u8; MAX_TOKEN_BYTES as usize];
        for _ in 0..self.head.index_slots {
            let mut raw = [0u8; INDEX_SLOT_BYTES];
            let at = self.head.index_offset + u64::from(slot) * INDEX_SLOT_BYTES as u64;
            self.src.read_exact(at, &mut raw, None)?;
            let id = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let stored_hash = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            if id == EMPTY_SLOT {
                return Ok(None);
            }
            if id >= self.vocab {
                return Err(FormatError::TokenizerData { entry: slot }.into());
            }
            if stored_hash == hash {
                let (offset, len) = self.token_range(id)?;
                if len == bytes.len() {
                    self.src.read_exact(offset, &mut candidate[..len], None)?;
                    if candidate[..len] == *bytes {
                        return Ok(Some(id));
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        Ok(None)
    }

    /// The merge rank of `bytes` (its token id), or [`NO_RANK`].
    fn rank(&mut self, bytes: &[u8]) -> Result<u32, Error<S::Error>> {
        Ok(self.lookup(bytes)?.unwrap_or(NO_RANK))
    }

    /// BPE of one piece; each resulting id goes to `emit` in order.
    fn encode_piece(
        &mut self,
        piece: &[u8],
        scratch: &mut [u32],
        emit: &mut impl FnMut(u32) -> Result<(), Error<S::Error>>,
    ) -> Result<(), Error<S::Error>> {
        if let Some(id) = self.lookup(piece)? {
            return emit(id);
        }
        let n = piece.len();
        if n < 2 {
            // Every single byte is a token; a vocabulary without one is corrupt.
            let byte = piece.first().copied().unwrap_or(0);
            return Err(FormatError::TokenizerData { entry: u32::from(byte) }.into());
        }
        let needed = 2 * (n + 1);
        if scratch.len() < needed {
            let given = scratch.len();
            return Err(Error::BufferTooSmall { what: "BPE scratch words", needed, given });
        }
        // parts: start offsets and the rank of merging each part with the next.
        let (starts, ranks) = scratch[..needed].split_at_mut(n + 1);
        for i in 0..n - 1 {
            starts[i] = i as u32;
            ranks[i] = self.rank(&piece[i..i + 2])?;
        }
        starts[n - 1] = (n - 1) as u32;
        ranks[n - 1] = NO_RANK;
        starts[n] = n as u32;
        ranks[n] = NO_RANK;
        let mut len = n + 1;
        loop {
            let mut best = (NO_RANK, 0);
            for (i, &r) in ranks[..len - 1].iter().enumerate() {
                if r < best.0 {
                    best = (r, i);
                }
            }
            if best.0 == NO_RANK {
                break;
            }
            let i = best.1;
            // The rank of part j merged with the part after it, once parts i and i + 1 are one.
            let merged =
                |j: usize| (j + 3 < len).then(|| (starts[j] as usize, starts[j + 3] as usize));
            if i > 0 {
                ranks[i - 1] = match merged(i - 1) {
                    Some((a, b)) => self.rank(&piece[a..b])?,
                    None => NO_RANK,
                };
            }
            ranks[i] = match merged(i) {
                Some((a, b)) => self.rank(&piece[a..b])?,
                None => NO_RANK,
            };
            starts.copy_within(i + 2..len, i + 1);
            ranks.copy_within(i + 2..len, i + 1);
            len -= 1;
        }
        for k in 0..len - 1 {
            let part = &piece[starts[k] as usize..starts[k + 1] as usize];
            match self.lookup(part)? {
                Some(id) => emit(id)?,
                None => return Err(FormatError::TokenizerData { entry: u32::from(part[0]) }.into()),
            }
        }
        Ok(())
    }
}
