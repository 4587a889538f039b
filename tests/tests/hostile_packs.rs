//! Hostile packs as properties (proptest): truncated at every section boundary and anywhere,
//! bits flipped in header, manifest and data with CRC checks on and off, absurd counts,
//! sizes and offsets behind a correct manifest CRC, zero-sized dimensions. Each is a typed
//! error naming the problem, or a finite result; never a panic, and no read ever asks for a
//! byte past the end of the file (every read goes through a recording storage).

mod common;

use std::convert::Infallible;
use std::sync::OnceLock;

use common::*;
use host_tools::faults::Recording;
use picogpt_core::format::{HEADER_BYTES, INDEX_SLOT_BYTES, ManifestHead, TensorEntry};
use picogpt_core::kv::KvRangeError;
use picogpt_core::{
    ConfigError, Error, FormatError, KvFormat, MatrixFormat, Model, ModelConfig, RamKv, TensorId,
    TensorKind, WorkspaceSpec,
};
use proptest::prelude::*;

/// One block of width 32, 8 positions, 300 tokens: no tokenizer.
const SMALL: ModelConfig = ModelConfig {
    n_layer: 1,
    n_embd: 32,
    n_head: 2,
    n_ctx: 8,
    vocab_size: 300,
    layer_norm_epsilon: 1e-5,
};

/// What a byte range of a pack holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Header,
    Manifest,
    Tensor(TensorId),
    Vocabulary,
    Index,
    /// Alignment padding: covered by no CRC, read by nobody.
    Padding,
}

#[derive(Clone, Copy, Debug)]
struct Section {
    part: Part,
    start: u64,
    end: u64,
}

struct Pack {
    name: &'static str,
    bytes: Vec<u8>,
    sections: Vec<Section>,
    /// Logits of the clean pack's second forward call.
    clean: Vec<f32>,
}

fn packs() -> &'static [Pack] {
    static PACKS: OnceLock<Vec<Pack>> = OnceLock::new();
    PACKS.get_or_init(|| {
        let small = Fixture::new("hostile_small", SMALL, 3);
        let gpt2 = Fixture::new("hostile_gpt2", ModelConfig { vocab_size: 50257, ..SMALL }, 3);
        let int8 = MatrixFormat::Int8 { block: 32 };
        [
            ("f32", small.pack("f32", MatrixFormat::F32, false)),
            ("f16", small.pack("f16", MatrixFormat::F16, false)),
            ("int8", small.pack("int8", int8, true)),
            ("int8 + tokenizer", gpt2.pack("int8", int8, true)),
        ]
        .into_iter()
        .map(|(name, path)| {
            let bytes = std::fs::read(path).unwrap();
            let sections = sections(&bytes);
            let clean = exercise(&bytes, Vec::new(), true).forward.unwrap().unwrap();
            Pack { name, bytes, sections, clean }
        })
        .collect()
    })
}

/// Every byte range of a valid pack, in file order, gaps included.
fn sections(bytes: &[u8]) -> Vec<Section> {
    let model = Model::open(Recording::new(bytes)).unwrap();
    let layout = model.layout();
    let mut parts = vec![
        (Part::Header, 0, HEADER_BYTES as u64),
        (Part::Manifest, HEADER_BYTES as u64, HEADER_BYTES as u64 + layout.manifest_len()),
    ];
    for index in 0..layout.tensor_count() {
        let e = layout.expected_entry(layout.id_at(index));
        parts.push((Part::Tensor(e.id), e.offset, e.offset + e.len));
    }
    if let Some(t) = layout.tokenizer() {
        let index_len = u64::from(t.index_slots) * INDEX_SLOT_BYTES as u64;
        parts.push((Part::Vocabulary, t.vocab_offset, t.vocab_offset + t.vocab_len));
        parts.push((Part::Index, t.index_offset, t.index_offset + index_len));
    }
    assert_eq!(parts.last().unwrap().2, bytes.len() as u64);
    let mut out = Vec::new();
    let mut at = 0;
    for (part, start, end) in parts {
        if start > at {
            out.push(Section { part: Part::Padding, start: at, end: start });
        }
        out.push(Section { part, start, end });
        at = end;
    }
    out
}

/// What core did with a pack.
#[derive(Debug)]
struct Outcome {
    open: Result<(), Error<Infallible>>,
    verify_all: Option<Result<(), Error<Infallible>>>,
    /// All logits of the second call (two tokens at 0, then one at 2).
    forward: Option<Result<Vec<f32>, Error<Infallible, KvRangeError>>>,
    encode: Option<Result<Vec<u32>, Error<Infallible>>>,
    out_of_bounds: Option<(u64, usize)>,
}

/// Opens the pack (with `flips` applied on the fly) and, if it opens, checks every CRC,
/// runs two forward calls (CRC checks as `verify` says) and encodes a text.
fn exercise(bytes: &[u8], flips: Vec<(u64, u8)>, verify: bool) -> Outcome {
    let mut storage = Recording::with_flips(bytes, flips);
    let mut outcome = Outcome {
        open: Ok(()),
        verify_all: None,
        forward: None,
        encode: None,
        out_of_bounds: None,
    };
    match Model::open(&mut storage) {
        Err(e) => outcome.open = Err(e),
        Ok(mut model) => {
            let cfg = *model.config();
            let spec = WorkspaceSpec::new(2, 512);
            let mut mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
            let mut ws = model.workspace(&spec, &mut mem).unwrap();
            outcome.verify_all = Some(model.verify_all(&mut ws));
            let mut kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F32) * 3];
            let mut kv = RamKv::new(&cfg, KvFormat::F32, &mut kv_mem);
            model.set_verify(verify);
            let mut first = AllLogits::default();
            let mut second = AllLogits::default();
            outcome.forward = Some(
                model
                    .forward(&mut ws, &mut kv, &[1, 2], 0, &mut first)
                    .and_then(|()| model.forward(&mut ws, &mut kv, &[3], 2, &mut second))
                    .map(|()| second.0),
            );
            if model.tokenizer().is_some() {
                let text = "Four score and seven years ago, naïve 東京 🙂";
                let (mut scratch, mut ids) = (vec![0u32; 256], vec![0u32; text.len()]);
                outcome.encode = Some(
                    model
                        .encode(text.as_bytes(), &mut scratch, &mut ids)
                        .map(|n| ids[..n].to_vec()),
                );
            }
        }
    }
    outcome.out_of_bounds = storage.out_of_bounds();
    outcome
}

/// Every forward result is finite or a typed error.
fn assert_sane(outcome: &Outcome) {
    assert_eq!(outcome.out_of_bounds, None, "read past the end of the file: {outcome:?}");
    if let Some(Ok(logits)) = &outcome.forward {
        assert!(logits.iter().all(|l| l.is_finite()), "non-finite logit handed out");
    }
}

fn truncated(pack: &Pack, len: usize) {
    let outcome = exercise(&pack.bytes[..len], Vec::new(), true);
    assert_sane(&outcome);
    match outcome.open {
        Err(Error::Format(FormatError::Truncated { needed, found })) => {
            assert_eq!(found, len as u64, "{}", pack.name);
            assert!(needed > found && needed <= pack.bytes.len() as u64, "{needed}");
        }
        other => panic!("{} cut at {len}: expected Truncated, got {other:?}", pack.name),
    }
}

#[test]
fn truncation_at_every_section_boundary_is_named() {
    let mut cases = 0;
    for pack in packs() {
        for s in &pack.sections {
            for edge in [s.start, s.end] {
                for len in [edge.saturating_sub(1), edge, edge + 1] {
                    if len < pack.bytes.len() as u64 {
                        truncated(pack, len as usize);
                        cases += 1;
                    }
                }
            }
        }
    }
    println!("{cases} truncations at section boundaries");
    assert!(cases > 4 * 3 * 16, "{cases}");
}

#[test]
fn zero_sized_dimensions_are_named() {
    let pack = &packs()[2];
    let fields = ["n_layer", "n_embd", "n_head", "n_ctx", "vocab_size"];
    for field in fields {
        let bad = rewrite_manifest(&pack.bytes, |head, _| {
            let c = &mut head.config;
            let value = match field {
                "n_layer" => &mut c.n_layer,
                "n_embd" => &mut c.n_embd,
                "n_head" => &mut c.n_head,
                "n_ctx" => &mut c.n_ctx,
                _ => &mut c.vocab_size,
            };
            *value = 0;
        });
        let outcome = exercise(&bad, Vec::new(), true);
        assert_sane(&outcome);
        let expected = FormatError::Config(ConfigError::Zero { field });
        assert_eq!(outcome.open, Err(Error::Format(expected)), "{field}");
    }
}

/// A manifest field to set, and whether any other value must make `open` fail.
#[derive(Clone, Copy, Debug)]
enum Field {
    NLayer,
    NEmbd,
    NHead,
    NCtx,
    Vocab,
    Alignment,
    FileLen,
    TensorCount,
    VocabOffset,
    VocabLen,
    IndexOffset,
    IndexSlots,
    MaxTokenBytes,
    EndOfText,
    Rows(usize),
    Cols(usize),
    Offset(usize),
    Len(usize),
    Block(usize),
    Extras(usize),
    Layer(usize),
    Crc(usize),
}

impl Field {
    /// Sets the field to `value` (truncated to the field's width); false if the pack has no
    /// such field.
    fn set(self, head: &mut ManifestHead, entries: &mut [TensorEntry], value: u64) -> bool {
        let v32 = value as u32;
        let c = &mut head.config;
        match self {
            Self::NLayer => c.n_layer = v32,
            Self::NEmbd => c.n_embd = v32,
            Self::NHead => c.n_head = v32,
            Self::NCtx => c.n_ctx = v32,
            Self::Vocab => c.vocab_size = v32,
            Self::Alignment => head.alignment = v32,
            Self::FileLen => head.file_len = value,
            Self::TensorCount => head.tensor_count = v32,
            Self::Rows(i) => entries[i].rows = v32,
            Self::Cols(i) => entries[i].cols = v32,
            Self::Offset(i) => entries[i].offset = value,
            Self::Len(i) => entries[i].len = value,
            Self::Block(i) => entries[i].format.block = v32,
            Self::Extras(i) => entries[i].format.extras = v32,
            Self::Layer(i) => entries[i].id.layer = value as u16,
            Self::Crc(i) => entries[i].crc32 = v32,
            tokenizer_field => {
                let Some(t) = head.tokenizer.as_mut() else { return false };
                match tokenizer_field {
                    Self::VocabOffset => t.vocab_offset = value,
                    Self::VocabLen => t.vocab_len = value,
                    Self::IndexOffset => t.index_offset = value,
                    Self::IndexSlots => t.index_slots = v32,
                    Self::MaxTokenBytes => t.max_token_bytes = v32,
                    _ => t.end_of_text = v32,
                }
            }
        }
        true
    }

    /// Fields the layout is derived from or checked against: any change must fail `open`.
    fn structural(self) -> bool {
        !matches!(
            self,
            Self::NHead | Self::VocabLen | Self::MaxTokenBytes | Self::EndOfText | Self::Crc(_)
        )
    }
}

fn field() -> impl Strategy<Value = Field> {
    let entry = 0..16usize;
    prop_oneof![
        Just(Field::NLayer),
        Just(Field::NEmbd),
        Just(Field::NHead),
        Just(Field::NCtx),
        Just(Field::Vocab),
        Just(Field::Alignment),
        Just(Field::FileLen),
        Just(Field::TensorCount),
        Just(Field::VocabOffset),
        Just(Field::VocabLen),
        Just(Field::IndexOffset),
        Just(Field::IndexSlots),
        Just(Field::MaxTokenBytes),
        Just(Field::EndOfText),
        entry.clone().prop_map(Field::Rows),
        entry.clone().prop_map(Field::Cols),
        entry.clone().prop_map(Field::Offset),
        entry.clone().prop_map(Field::Len),
        entry.clone().prop_map(Field::Block),
        entry.clone().prop_map(Field::Extras),
        entry.clone().prop_map(Field::Layer),
        entry.prop_map(Field::Crc),
    ]
}

/// Absurd and edge values: 0, 1, powers of two, the integer limits and around them.
fn absurd() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::from(u16::MAX)),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) - 1),
        Just(1u64 << 31),
        Just(u64::MAX),
        Just(u64::MAX - 511),
        Just(1u64 << 63),
        (0u32..64).prop_map(|s| 1u64 << s),
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
        0u64..4096,
    ]
}

/// `cases` random cases; a failure prints its shrunk input (nothing is written to disk).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        max_global_rejects: cases,
        ..ProptestConfig::with_cases(cases)
    }
}

fn pack_index() -> impl Strategy<Value = usize> {
    0..4usize
}

/// `count` distinct single-bit flips at offsets drawn from `range`.
fn bit_flips(start: u64, end: u64, count: usize, seeds: &[(u64, u8)]) -> Vec<(u64, u8)> {
    let mut flips: Vec<(u64, u8)> = Vec::new();
    for &(r, bit) in seeds.iter().take(count) {
        let at = start + r % (end - start);
        let mask = 1u8 << (bit % 8);
        match flips.iter_mut().find(|(o, _)| *o == at) {
            Some((_, m)) if *m & mask == 0 => *m |= mask,
            Some(_) => {}
            None => flips.push((at, mask)),
        }
    }
    flips
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn truncation_anywhere_is_named(pack in pack_index(), cut in any::<u64>()) {
        let pack = &packs()[pack];
        truncated(pack, (cut % pack.bytes.len() as u64) as usize);
    }

    #[test]
    fn header_flips_are_named(
        pack in pack_index(),
        seeds in prop::collection::vec((any::<u64>(), any::<u8>()), 1..4),
    ) {
        let pack = &packs()[pack];
        let flips = bit_flips(0, HEADER_BYTES as u64, seeds.len(), &seeds);
        let outcome = exercise(&pack.bytes, flips.clone(), true);
        assert_sane(&outcome);
        let first = flips.iter().map(|f| f.0).min().unwrap();
        match (first, outcome.open) {
            (0..4, Err(Error::Format(FormatError::BadMagic { .. }))) => {}
            (4..8, Err(Error::Format(FormatError::UnsupportedVersion { .. }))) => {}
            (
                8..16,
                Err(Error::Format(
                    FormatError::ManifestCrc { .. }
                    | FormatError::ManifestTooLarge { .. }
                    | FormatError::Truncated { .. },
                )),
            ) => {}
            (at, other) => panic!("{}: flips {flips:?} (first at {at}): {other:?}", pack.name),
        }
    }

    #[test]
    fn manifest_flips_fail_its_crc(
        pack in pack_index(),
        seeds in prop::collection::vec((any::<u64>(), any::<u8>()), 1..4),
    ) {
        let pack = &packs()[pack];
        let manifest = pack.sections[1];
        let flips = bit_flips(manifest.start, manifest.end, seeds.len(), &seeds);
        let outcome = exercise(&pack.bytes, flips, true);
        assert_sane(&outcome);
        let crc = matches!(outcome.open, Err(Error::Format(FormatError::ManifestCrc { .. })));
        prop_assert!(crc, "{:?}", outcome.open);
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn manifest_flips_behind_a_correct_crc_are_typed(
        pack in pack_index(),
        seeds in prop::collection::vec((any::<u64>(), any::<u8>()), 1..4),
        verify in any::<bool>(),
    ) {
        let pack = &packs()[pack];
        let manifest = pack.sections[1];
        let mut bytes = pack.bytes.clone();
        for (at, mask) in bit_flips(manifest.start, manifest.end, seeds.len(), &seeds) {
            bytes[at as usize] ^= mask;
        }
        let crc = crc32fast::hash(&bytes[manifest.start as usize..manifest.end as usize]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        let outcome = exercise(&bytes, Vec::new(), verify);
        assert_sane(&outcome);
        prop_assert!(matches!(outcome.open, Ok(()) | Err(Error::Format(_))), "{outcome:?}");
    }

    #[test]
    fn data_flips_fail_their_crc_or_stay_finite(
        pack in pack_index(),
        section in any::<prop::sample::Index>(),
        seeds in prop::collection::vec((any::<u64>(), any::<u8>()), 1..3),
        verify in any::<bool>(),
    ) {
        let pack = &packs()[pack];
        let data: Vec<&Section> = pack.sections[2..].iter().filter(|s| s.end > s.start).collect();
        let s = *section.get(&data);
        let flips = bit_flips(s.start, s.end, seeds.len(), &seeds);
        let outcome = exercise(&pack.bytes, flips, verify);
        assert_sane(&outcome);
        prop_assert!(outcome.open.is_ok(), "{outcome:?}");
        let verified = outcome.verify_all.unwrap();
        let forward = outcome.forward.unwrap();
        match s.part {
            Part::Tensor(tensor) => {
                prop_assert!(
                    matches!(verified, Err(Error::Format(FormatError::Crc { tensor: t, .. })) if t == tensor),
                    "{verified:?}"
                );
                match forward {
                    Err(Error::Format(FormatError::Crc { tensor: t, .. })) => {
                        prop_assert!(verify && t == tensor, "{t} for a flip in {tensor}");
                    }
                    // The pass reads only two rows of wpe, so its CRC is never checked there.
                    Ok(_) => prop_assert!(!verify || tensor.kind == TensorKind::Wpe),
                    Err(Error::NonFinite { .. }) => {
                        let wte = tensor.kind == TensorKind::Wte;
                        prop_assert!(!verify || wte || tensor.kind == TensorKind::Wpe);
                    }
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
            }
            part => {
                let section = match part {
                    Part::Vocabulary => Some("vocabulary"),
                    Part::Index => Some("index"),
                    _ => None,
                };
                match section {
                    Some(section) => prop_assert_eq!(
                        verified,
                        Err(Error::Format(FormatError::TokenizerCrc { section }))
                    ),
                    None => prop_assert_eq!(verified, Ok(())),
                }
                // Padding and tokenizer bytes never reach the forward pass.
                prop_assert!(forward.unwrap() == pack.clean, "logits changed");
            }
        }
    }
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn absurd_manifest_values_are_typed_errors(
        pack in pack_index(),
        field in field(),
        value in absurd(),
        verify in any::<bool>(),
    ) {
        let pack = &packs()[pack];
        let mut known = true;
        let bad = rewrite_manifest(&pack.bytes, |head, entries| known = field.set(head, entries, value));
        prop_assume!(known && bad != pack.bytes);
        let outcome = exercise(&bad, Vec::new(), verify);
        assert_sane(&outcome);
        match &outcome.open {
            Ok(()) => prop_assert!(!field.structural(), "{field:?} = {value} opened"),
            Err(Error::Format(_)) => {}
            Err(other) => prop_assert!(false, "{field:?} = {value}: {other:?}"),
        }
        match (field, &outcome.open) {
            (Field::Rows(i) | Field::Cols(i) | Field::Offset(i) | Field::Len(i), Err(e)) => {
                let Error::Format(FormatError::TensorField { tensor, .. }) = e else {
                    panic!("{field:?} = {value}: {e:?}")
                };
                let model = Model::open(Recording::new(&pack.bytes)).unwrap();
                prop_assert_eq!(*tensor, model.layout().id_at(i as u64));
            }
            (Field::Crc(i), Ok(())) => {
                let model = Model::open(Recording::new(&pack.bytes)).unwrap();
                let tensor = model.layout().id_at(i as u64);
                let verified = outcome.verify_all.as_ref().unwrap();
                prop_assert!(
                    matches!(verified, Err(Error::Format(FormatError::Crc { tensor: t, .. })) if *t == tensor),
                    "{verified:?}"
                );
            }
            _ => {}
        }
    }
}
