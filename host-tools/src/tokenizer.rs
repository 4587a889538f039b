//! The host tokenizer: GPT-2's byte-level BPE from tiktoken-rs (`r50k_base`, shipped with the
//! crate), or from a checkpoint's `vocab.json` + `merges.txt` as the Hugging Face hub has them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tiktoken_rs::CoreBPE;

/// `<|endoftext|>`: GPT-2's only special token.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// GPT-2's pre-tokenizer pattern, as tiktoken-rs writes it for `r50k_base`.
const PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
/// GPT-2's vocabulary size.
pub const GPT2_VOCAB: u32 = 50257;
/// The Hugging Face vocabulary file.
pub const VOCAB_FILE: &str = "vocab.json";
/// The Hugging Face merges file.
pub const MERGES_FILE: &str = "merges.txt";

/// Why a tokenizer cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `vocab.json` is not a JSON object of strings to ids.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The files contradict each other or GPT-2's byte-level scheme.
    #[error("{path}: {problem}")]
    Inconsistent {
        /// The file where the contradiction shows.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The vocabulary does not have the model's size.
    #[error("the tokenizer has {found} tokens, the model's vocab_size is {expected}")]
    VocabSize {
        /// The model's vocab_size.
        expected: u32,
        /// Tokens in the tokenizer.
        found: usize,
    },
    /// tiktoken-rs failed to build its encoder.
    #[error("building the BPE encoder: {0}")]
    Bpe(String),
}

/// GPT-2's tokenizer with its vocabulary at hand.
pub struct Tokenizer {
    bpe: CoreBPE,
    /// Bytes of every token, by id (`<|endoftext|>` included as its text).
    vocab: Vec<Vec<u8>>,
    end_of_text: u32,
}

impl Tokenizer {
    /// The GPT-2 vocabulary shipped with tiktoken-rs (`r50k_base`, 50257 tokens).
    pub fn gpt2() -> Result<Self, TokenizerError> {
        let bpe = tiktoken_rs::r50k_base().map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        let end_of_text = 50256;
        let vocab = (0..=end_of_text)
            .map(|id| bpe.decode_bytes(&[id]).map_err(|e| TokenizerError::Bpe(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self { bpe, vocab, end_of_text })
    }

    /// Reads `vocab.json` and `merges.txt` from `dir` and checks that they agree: the single
    /// bytes come first, then one token per merge line in order, then `<|endoftext|>`.
    pub fn from_hf_files(dir: &Path) -> Result<Self, TokenizerError> {
        let vocab_path = dir.join(VOCAB_FILE);
        let merges_path = dir.join(MERGES_FILE);
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|source| TokenizerError::Io { path: path.into(), source })
        };
        let ids: HashMap<String, u32> = serde_json::from_str(&read(&vocab_path)?)
            .map_err(|source| TokenizerError::Json { path: vocab_path.clone(), source })?;
        let merges_text = read(&merges_path)?;
        let inconsistent = |path: &Path, problem: String| TokenizerError::Inconsistent {
            path: path.into(),
            problem,
        };
        let unicode_to_byte: HashMap<char, u8> =
            byte_to_unicode().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let to_bytes = |token: &str| -> Option<Vec<u8>> {
            token.chars().map(|c| unicode_to_byte.get(&c).copied()).collect()
        };

        let end_of_text = *ids
            .get(END_OF_TEXT)
            .ok_or_else(|| inconsistent(&vocab_path, format!("{END_OF_TEXT} is missing")))?;
        let mut vocab: Vec<Option<Vec<u8>>> = vec![None; ids.len()];
        for (token, &id) in &ids {
            let slot = vocab.get_mut(id as usize).ok_or_else(|| {
                inconsistent(
                    &vocab_path,
                    format!("id {id} of {token:?} is beyond {} tokens", ids.len()),
                )
            })?;
            let bytes = if id == end_of_text {
                token.as_bytes().to_vec()
            } else {
                to_bytes(token).ok_or_else(|| {
                    inconsistent(
                        &vocab_path,
                        format!("{token:?} is not in GPT-2's byte-level alphabet"),
                    )
                })?
            };
            if slot.replace(bytes).is_some() {
                return Err(inconsistent(&vocab_path, format!("id {id} is used twice")));
            }
        }
        let vocab: Vec<Vec<u8>> = vocab.into_iter().map(Option::unwrap_or_default).collect();
        // Expected ranks: the 256 bytes in GPT-2's alphabet order, then one token per merge.
        let mut expected: Vec<Vec<u8>> = byte_to_unicode_order().iter().map(|&b| vec![b]).collect();
        for (line_no, line) in merges_text.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let (a, b) = line.split_once(' ').ok_or_else(|| {
                inconsistent(
                    &merges_path,
                    format!("line {}: not two tokens: {line:?}", line_no + 1),
                )
            })?;
            let merged = to_bytes(a).zip(to_bytes(b)).map(|(mut a, b)| {
                a.extend(b);
                a
            });
            let merged = merged.ok_or_else(|| {
                inconsistent(
                    &merges_path,
                    format!("line {}: {line:?} is not byte-level", line_no + 1),
                )
            })?;
            expected.push(merged);
        }
        for (rank, bytes) in expected.iter().enumerate() {
            let id = if rank >= end_of_text as usize { rank + 1 } else { rank };
            if vocab.get(id) != Some(bytes) {
                return Err(inconsistent(
                    &vocab_path,
                    format!(
                        "merge rank {rank} ({:?}) should be token id {id} in {VOCAB_FILE}, as {MERGES_FILE} orders it",
                        String::from_utf8_lossy(bytes)
                    ),
                ));
            }
        }
        if expected.len() + 1 != vocab.len() {
            return Err(inconsistent(
                &merges_path,
                format!(
                    "{} merges + 256 bytes + {END_OF_TEXT} ≠ {} tokens",
                    expected.len() - 256,
                    vocab.len()
                ),
            ));
        }
        let encoder = vocab
            .iter()
            .enumerate()
            .filter(|&(id, _)| id != end_of_text as usize)
            .map(|(id, bytes)| (bytes.clone(), id as u32))
            .collect();
        let specials = [(END_OF_TEXT.to_owned(), end_of_text)].into_iter().collect();
        let bpe = CoreBPE::new(encoder, specials, PATTERN)
            .map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        Ok(Self { bpe, vocab, end_of_text })
    }

    /// The checkpoint folder's tokenizer when it has `vocab.json` + `merges.txt`, else GPT-2's;
    /// either way it must have the model's vocabulary size.
    pub fn for_checkpoint(dir: &Path, vocab_size: u32) -> Result<Self, TokenizerError> {
        let tokenizer = if dir.join(VOCAB_FILE).exists() || dir.join(MERGES_FILE).exists() {
            Self::from_hf_files(dir)?
        } else {
            Self::gpt2()?
        };
        if tokenizer.vocab.len() != vocab_size as usize {
            return Err(TokenizerError::VocabSize {
                expected: vocab_size,
                found: tokenizer.vocab.len(),
            });
        }
        Ok(tokenizer)
    }

    /// The tokenizer a pack of the checkpoint in `dir` should carry: the folder's own
    /// `vocab.json` + `merges.txt` when present (they must fit the model), else GPT-2's when
    /// the model has GPT-2's vocabulary size, else none (such a pack works with token ids).
    pub fn for_pack(dir: &Path, vocab_size: u32) -> Result<Option<Self>, TokenizerError> {
        let has_files = dir.join(VOCAB_FILE).exists() || dir.join(MERGES_FILE).exists();
        if has_files || vocab_size == GPT2_VOCAB {
            Self::for_checkpoint(dir, vocab_size).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Token ids of `text` (special tokens are not recognised: `<|endoftext|>` is plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// The bytes of `ids`, concatenated (not necessarily UTF-8 on their own).
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter().flat_map(|&id| self.token(id).iter().copied()).collect()
    }

    /// The bytes of one token (empty for an id outside the vocabulary).
    pub fn token(&self, id: u32) -> &[u8] {
        self.vocab.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Number of tokens, `<|endoftext|>` included.
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// Whether the vocabulary is empty (never, for a built tokenizer).
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// Id of `<|endoftext|>`.
    pub fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    /// Whether this is exactly the GPT-2 vocabulary shipped with tiktoken-rs.
    pub fn is_gpt2(&self) -> Result<bool, TokenizerError> {
        Ok(Self::gpt2()?.vocab == self.vocab)
    }

    /// Writes `vocab.json` and `merges.txt` the way the Hugging Face hub has them (each whole
    /// or not at all).
    pub fn write_hf_files(&self, dir: &Path) -> Result<(), TokenizerError> {
        let alphabet = byte_to_unicode();
        let text =
            |bytes: &[u8]| -> String { bytes.iter().map(|&b| alphabet[b as usize]).collect() };
        let mut ids = serde_json::Map::new();
        for (id, bytes) in self.vocab.iter().enumerate() {
            let key =
                if id == self.end_of_text as usize { END_OF_TEXT.to_owned() } else { text(bytes) };
            ids.insert(key, serde_json::Value::from(id));
        }
        let mut merges = String::from("#version: 0.2\n");
        let ranks: HashMap<&[u8], u32> = self
            .vocab
            .iter()
            .enumerate()
            .filter(|&(id, _)| id != self.end_of_text as usize)
            .map(|(id, b)| (b.as_slice(), id as u32))
            .collect();
        for (id, bytes) in self.vocab.iter().enumerate().skip(256) {
            if id == self.end_of_text as usize {
                continue;
            }
            let (a, b) = merge_pair(bytes, &ranks, id as u32).ok_or_else(|| {
                TokenizerError::Inconsistent {
                    path: dir.join(MERGES_FILE),
                    problem: format!("token {id} is not the merge of two earlier tokens"),
                }
            })?;
            merges.push_str(&format!("{} {}\n", text(a), text(b)));
        }
        let write = |name: &str, contents: String| {
            let path = dir.join(name);
            crate::partial::write(&path, contents.as_bytes())
                .map_err(|source| TokenizerError::Io { path, source })
        };
        let json = serde_json::to_string(&ids)
            .map_err(|source| TokenizerError::Json { path: dir.join(VOCAB_FILE), source })?;
        write(VOCAB_FILE, json)?;
        write(MERGES_FILE, merges)
    }
}

/// The two tokens whose merge makes `bytes` (of rank `rank`): BPE of `bytes` with the merges
/// of lower rank only must end in exactly two parts.
fn merge_pair<'a>(
    bytes: &'a [u8],
    ranks: &HashMap<&[u8], u32>,
    rank: u32,
) -> Option<(&'a [u8], &'a [u8])> {
    let mut bounds: Vec<usize> = (0..=bytes.len()).collect();
    loop {
        if bounds.len() == 3 {
            return Some((&bytes[..bounds[1]], &bytes[bounds[1]..]));
        }
        let best = (0..bounds.len() - 2)
            .filter_map(|i| ranks.get(&bytes[bounds[i]..bounds[i + 2]]).map(|&r| (r, i)))
            .filter(|&(r, _)| r < rank)
            .min()?;
        bounds.remove(best.1 + 1);
    }
}

/// GPT-2's printable stand-in for each byte (`bytes_to_unicode` in its `encoder.py`).
fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(extra).unwrap_or('\0');
            extra += 1;
            c
        };
    }
    table
}

/// The bytes in the order GPT-2 ranks them: the printable ones first, then the rest.
fn byte_to_unicode_order() -> Vec<u8> {
    let table = byte_to_unicode();
    let mut order: Vec<u8> = (0..=255u8).collect();
    order.sort_by_key(|&b| table[b as usize]);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_picogpt_seed_prompt() {
        let t = Tokenizer::gpt2().unwrap();
        assert_eq!(
            t.encode("Alan Turing theorized that computers would one day become"),
            [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716]
        );
        assert_eq!(t.decode(&[36235, 39141]), b"Alan Turing");
        assert_eq!(t.token(50256), END_OF_TEXT.as_bytes());
    }

    #[test]
    fn hf_files_round_trip_and_agree_with_tiktoken() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokenizer::gpt2().unwrap();
        t.write_hf_files(dir.path()).unwrap();
        let back = Tokenizer::from_hf_files(dir.path()).unwrap();
        assert!(back.is_gpt2().unwrap());
        let text = "Hello, world! It's 2026 — naïve café 東京 🙂\n\n  spaces";
        assert_eq!(back.encode(text), t.encode(text));
    }

    #[test]
    fn disagreeing_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        Tokenizer::gpt2().unwrap().write_hf_files(dir.path()).unwrap();
        let merges = dir.path().join(MERGES_FILE);
        let text = std::fs::read_to_string(&merges).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(1, 2);
        std::fs::write(&merges, lines.join("\n")).unwrap();
        let err = Tokenizer::from_hf_files(dir.path()).err().unwrap();
        assert!(err.to_string().contains("merge rank 256"), "{err}");
        let err = Tokenizer::for_checkpoint(Path::new("/nonexistent"), 96).err().unwrap();
        assert!(matches!(err, TokenizerError::VocabSize { expected: 96, found: 50257 }), "{err}");
    }
}
