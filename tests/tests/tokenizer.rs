//! The tokenizers against each other on a corpus of 2,500 varied strings:
//! - the host tokenizer (tiktoken-rs `r50k_base`) against an independent re-implementation of
//!   OpenAI's `encoder.py` (regex split + merge-list BPE over `vocab.json` / `merges.txt`);
//! - core's on-device encoder over the pack's tokenizer sections against the host;
//! - core's decoder against the host for every token id, and text round trips.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::corpus::corpus;
use common::*;
use host_tools::run::{Prompt, RunError, RunOptions, run};
use host_tools::tokenizer::{Tokenizer, TokenizerError};
use picogpt_core::utf8::Utf8Stream;
use picogpt_core::{Error, MatrixFormat, Model, RandomSampling, Sampling, SliceStorage};

const CORPUS: usize = 2500;

struct Setup {
    dir: PathBuf,
    pack: PathBuf,
    pack_bytes: Vec<u8>,
    host: Tokenizer,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let fixture = Fixture::new("tokenizer", TINY, 4);
        Tokenizer::gpt2().unwrap().write_hf_files(&fixture.dir).unwrap();
        let pack = fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true);
        let pack_bytes = std::fs::read(&pack).unwrap();
        let host = Tokenizer::from_hf_files(&fixture.dir).unwrap();
        Setup { dir: fixture.dir, pack, pack_bytes, host }
    })
}

/// OpenAI's `encoder.py`, written out: regex pieces, GPT-2's byte-to-unicode alphabet, and
/// BPE that repeatedly merges every occurrence of the best-ranked pair in `merges.txt`.
struct EncoderPy {
    pattern: fancy_regex::Regex,
    byte_encoder: Vec<char>,
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
}

impl EncoderPy {
    fn load(dir: &Path) -> Self {
        let encoder: HashMap<String, u32> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vocab.json")).unwrap())
                .unwrap();
        let merges = std::fs::read_to_string(dir.join("merges.txt")).unwrap();
        let ranks = merges
            .lines()
            .skip(1)
            .enumerate()
            .map(|(rank, line)| {
                let (a, b) = line.split_once(' ').unwrap();
                ((a.to_owned(), b.to_owned()), rank)
            })
            .collect();
        let mut byte_encoder = Vec::with_capacity(256);
        let mut extra = 0;
        for b in 0..=255u32 {
            let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
            byte_encoder.push(char::from_u32(if printable { b } else { 256 + extra }).unwrap());
            extra += u32::from(!printable);
        }
        let pattern = fancy_regex::Regex::new(
            r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        )
        .unwrap();
        Self { pattern, byte_encoder, encoder, ranks }
    }

    fn bpe(&self, token: &str) -> Vec<String> {
        let mut word: Vec<String> = token.chars().map(String::from).collect();
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|p| self.ranks.get(&(p[0].clone(), p[1].clone())).map(|&r| (r, p)))
                .min_by_key(|&(r, _)| r);
            let Some((_, pair)) = best else { break };
            let (first, second) = (pair[0].clone(), pair[1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in self.pattern.find_iter(text) {
            let piece = piece.unwrap().as_str();
            let token: String = piece.bytes().map(|b| self.byte_encoder[b as usize]).collect();
            ids.extend(self.bpe(&token).iter().map(|t| self.encoder[t]));
        }
        ids
    }
}

fn device_encode(text: &str) -> Result<Vec<u32>, Error<std::convert::Infallible>> {
    let mut model = Model::open(SliceStorage::new(&setup().pack_bytes)).unwrap();
    let mut scratch = vec![0u32; 4096];
    let mut out = vec![0u32; text.len()];
    let n = model.encode(text.as_bytes(), &mut scratch, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[test]
fn host_encoder_matches_openai_encoder_py_on_the_corpus() {
    let s = setup();
    let reference = EncoderPy::load(&s.dir);
    let strings = corpus(CORPUS);
    let tokens: usize = strings
        .iter()
        .map(|text| {
            let ids = s.host.encode(text);
            assert_eq!(ids, reference.encode(text), "{text:?}");
            ids.len()
        })
        .sum();
    println!("{} strings, {tokens} tokens: host == encoder.py", strings.len());
    assert_eq!(
        s.host.encode("Alan Turing theorized that computers would one day become"),
        [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716]
    );
}

#[test]
fn device_encoder_matches_the_host_on_the_corpus() {
    let s = setup();
    let strings = corpus(CORPUS);
    for text in &strings {
        assert_eq!(device_encode(text).unwrap(), s.host.encode(text), "{text:?}");
    }
    println!("{} strings: core encode == host encode", strings.len());
}

#[test]
fn device_decoder_matches_the_host_for_every_token_and_round_trips_text() {
    let s = setup();
    let mut model = Model::open(SliceStorage::new(&s.pack_bytes)).unwrap();
    let mut buf = [0u8; 256];
    for id in 0..s.host.len() as u32 {
        assert_eq!(model.token_bytes(id, &mut buf).unwrap(), s.host.token(id), "token {id}");
    }
    for text in corpus(500) {
        let ids = device_encode(&text).unwrap();
        let mut decoded = String::new();
        let mut stream = Utf8Stream::new();
        for &id in &ids {
            stream.push(model.token_bytes(id, &mut buf).unwrap(), &mut |t| decoded.push_str(t));
        }
        stream.finish(&mut |t| decoded.push_str(t));
        assert_eq!(decoded, text);
    }
}

#[test]
fn sampling_is_reproducible_by_seed_and_changes_with_it() {
    let s = setup();
    let generate = |seed| {
        let sampling =
            Sampling::Random(RandomSampling { temperature: 1.0, top_k: 40, top_p: 0.95, seed });
        let opts = RunOptions {
            sampling,
            ..RunOptions::with_prompt(Prompt::Text("Alan Turing".into()), 12)
        };
        run(&s.pack, &opts, |_| {}).unwrap().tokens()
    };
    assert_eq!(generate(1), generate(1));
    assert_ne!(generate(1), generate(2));
    let greedy =
        run(&s.pack, &RunOptions::with_prompt(Prompt::Text("Alan Turing".into()), 12), |_| {})
            .unwrap()
            .tokens();
    assert_ne!(generate(1), greedy);
}

#[test]
fn an_empty_prompt_starts_from_end_of_text() {
    let s = setup();
    let report =
        run(&s.pack, &RunOptions::with_prompt(Prompt::Text(String::new()), 3), |_| {}).unwrap();
    assert_eq!(report.prompt, [50256]);
    let direct = run(&s.pack, &RunOptions::new(vec![50256], 3), |_| {}).unwrap();
    assert_eq!(report.tokens(), direct.tokens());
}

#[test]
fn bad_text_input_is_a_clear_error() {
    assert!(matches!(device_encode("ok").map(|v| v.len()), Ok(1)));
    let mut model = Model::open(SliceStorage::new(&setup().pack_bytes)).unwrap();
    let mut scratch = [0u32; 64];
    let mut out = [0u32; 8];
    let err = model.encode(b"ab\xffcd", &mut scratch, &mut out).unwrap_err();
    assert_eq!(err, Error::InvalidUtf8 { offset: 2 });
    assert_eq!(err.to_string(), "input is not valid UTF-8 (byte 2)");
    let long = "x".repeat(100);
    let err =
        model.encode(format!("{long} {long}").as_bytes(), &mut scratch, &mut out).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { what: "BPE scratch words", .. }), "{err}");

    let s = setup();
    let text = "word ".repeat(60).trim_end().to_owned();
    match run(&s.pack, &RunOptions::with_prompt(Prompt::Text(text), 10), |_| {
        panic!("no step may run")
    }) {
        Err(RunError::TooLong { prompt: 60, n: 10, needed: 69, n_ctx: 64 }) => {}
        other => panic!("expected TooLong, got {other:?}"),
    }
}

#[test]
fn packs_without_a_tokenizer_still_run_token_ids() {
    let s = setup();
    let weights = host_tools::checkpoint::load(&s.dir).unwrap();
    let bare = s.dir.join("bare.pgpt");
    let opts = host_tools::pack::PackOptions::new(MatrixFormat::F16, false);
    host_tools::pack::pack(&weights, None, &opts, &bare, |_, _, _| {}).unwrap();
    let err =
        run(&bare, &RunOptions::with_prompt(Prompt::Text("hi".into()), 2), |_| {}).unwrap_err();
    assert!(err.to_string().contains("no tokenizer sections"), "{err}");
    let ok = run(&bare, &RunOptions::new(vec![5303], 2), |_| {}).unwrap();
    assert_eq!(ok.steps.len(), 2);
    assert!(ok.steps[0].text.is_none());
}

#[test]
fn vocabulary_files_must_fit_the_model() {
    let s = setup();
    let err = Tokenizer::for_pack(&s.dir, 96).err().unwrap();
    assert!(matches!(err, TokenizerError::VocabSize { expected: 96, found: 50257 }), "{err}");
    assert!(err.to_string().contains("vocab_size is 96"), "{err}");
}
