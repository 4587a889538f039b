//! Failing storage: a read that fails, a card that is pulled and put back, reads that come
//! back 1 byte or a random number of bytes at a time, data that ends early, a slow card.
//! core names the tensor and offset it was reading, never hangs, and a failed step retried
//! with the same arguments gives exactly the logits of a run that never failed.

mod common;

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use host_tools::faults::{Fault, FaultError, Faulty, Recording};
use picogpt_core::format::{ENTRY_BYTES, MAX_TOKEN_BYTES};
use picogpt_core::kv::KvRangeError;
use picogpt_core::{
    Error, KvFormat, MatrixFormat, Model, RamKv, TensorId, TensorKind, Workspace, WorkspaceSpec,
};

type FaultyModel = Model<Faulty<Recording<'static>>>;
type StepError = Error<FaultError, KvRangeError>;

/// The forward calls of a session: a 4-token prompt at 0, then one token at 4 and at 5.
const STEPS: [(&[u32], usize); 3] = [(&PROMPT_HEAD, 0), (&[PROMPT[4]], 4), (&[PROMPT[5]], 5)];
const PROMPT_HEAD: [u32; 4] = [PROMPT[0], PROMPT[1], PROMPT[2], PROMPT[3]];
const TEXT: &str = "Four score and seven years ago our fathers brought forth";

fn pack() -> &'static [u8] {
    static PACK: OnceLock<Vec<u8>> = OnceLock::new();
    PACK.get_or_init(|| {
        let fixture = Fixture::new("storage_faults", TINY, 9);
        std::fs::read(fixture.pack("int8", MatrixFormat::Int8 { block: 32 }, true)).unwrap()
    })
}

/// Runs `f` on another thread and fails the test if it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("core hung (or panicked) on a misbehaving storage")
}

/// A model over the pack, its workspace memory and KV memory.
struct Session {
    model: FaultyModel,
    ws_mem: Vec<f32>,
    kv_mem: Vec<u8>,
    spec: WorkspaceSpec,
}

impl Session {
    fn new(verify: bool) -> Self {
        let mut model = Model::open(Faulty::new(Recording::new(pack()), Fault::None)).unwrap();
        model.set_verify(verify);
        let spec = WorkspaceSpec::new(4, 4096);
        let ws_mem = vec![0.0f32; model.workspace_bytes(&spec) / 4];
        let cfg = *model.config();
        let kv_mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F32) * 8];
        Self { model, ws_mem, kv_mem, spec }
    }

    /// Runs the steps; before step `s`, `before(s, model)` may arm a fault, and a failed
    /// step goes to `on_error(s, error, model)`, which returns whether to retry it.
    fn run(
        &mut self,
        mut before: impl FnMut(usize, &mut FaultyModel),
        mut on_error: impl FnMut(usize, StepError, &mut FaultyModel) -> bool,
    ) -> Vec<Vec<u32>> {
        let Self { model, ws_mem, kv_mem, spec } = self;
        let mut ws: Workspace<'_> = model.workspace(spec, ws_mem).unwrap();
        let cfg = *model.config();
        let mut kv = RamKv::new(&cfg, KvFormat::F32, kv_mem);
        let mut out = Vec::new();
        for (s, &(tokens, start)) in STEPS.iter().enumerate() {
            before(s, model);
            loop {
                let mut sink = AllLogits::default();
                match model.forward(&mut ws, &mut kv, tokens, start, &mut sink) {
                    Ok(()) => {
                        out.push(sink.0.iter().map(|l| l.to_bits()).collect());
                        break;
                    }
                    Err(e) => assert!(on_error(s, e, model), "step {s} failed for good"),
                }
            }
        }
        out
    }
}

/// Logits (as bits) of every step of an unfaulted session, and the reads each step makes.
fn clean(verify: bool) -> (Vec<Vec<u32>>, Vec<u64>) {
    let mut session = Session::new(verify);
    let mut starts = Vec::new();
    let logits =
        session.run(|_, m| starts.push(m.storage().reads()), |s, e, _| panic!("step {s}: {e}"));
    starts.push(session.model.storage().reads());
    (logits, starts.windows(2).map(|w| w[1] - w[0]).collect())
}

/// The tensor whose bytes, or whose table entry, hold file offset `offset`.
fn tensor_at(model: &FaultyModel, offset: u64) -> TensorId {
    let layout = model.layout();
    let table = layout.entry_offset(0);
    if (table..layout.data_start()).contains(&offset) {
        return layout.id_at((offset - table) / ENTRY_BYTES as u64);
    }
    (0..layout.tensor_count())
        .map(|i| layout.expected_entry(layout.id_at(i)))
        .find(|e| (e.offset..e.offset + e.len).contains(&offset))
        .map(|e| e.id)
        .unwrap_or_else(|| panic!("offset {offset} is in no tensor"))
}

/// Fails read `k` of step `step` once (or ends the data there once), checks the error names
/// the read, retries, and returns the session's logits.
fn faulted_session(verify: bool, step: usize, fault: Fault) -> Vec<Vec<u32>> {
    let mut session = Session::new(verify);
    let mut failures = 0;
    let logits = session.run(
        |s, m| m.storage_mut().arm(if s == step { fault } else { Fault::None }),
        |s, e, m| {
            assert_eq!(s, step, "only the armed step may fail");
            failures += 1;
            let (offset, tensor) = match (fault, e) {
                (Fault::FailAt(_), Error::Storage { source, offset, tensor }) => {
                    assert_eq!(Some(source), m.storage().failed());
                    assert_eq!(offset, source.offset, "the offset of the failed read");
                    (offset, tensor)
                }
                (Fault::EofAt(_), Error::UnexpectedEof { offset, tensor }) => (offset, tensor),
                (fault, e) => panic!("{fault:?}: unexpected {e:?}"),
            };
            assert_eq!(tensor, Some(tensor_at(m, offset)), "{fault:?} at offset {offset}");
            true
        },
    );
    assert_eq!(failures, 1, "{fault:?} in step {step}: exactly one failure, then the retry");
    logits
}

#[test]
fn a_failed_read_is_named_and_the_retried_step_gives_the_same_bits() {
    let mut cases = 0;
    for verify in [false, true] {
        let (expected, reads) = clean(verify);
        for (step, &n) in reads.iter().enumerate().take(2) {
            for k in [0, 1, 2, n / 4, n / 2, 3 * n / 4, n - 1] {
                for fault in [Fault::FailAt(k), Fault::EofAt(k)] {
                    let got = within(Duration::from_secs(60), move || {
                        faulted_session(verify, step, fault)
                    });
                    assert!(got == expected, "verify {verify}, step {step}, {fault:?}");
                    cases += 1;
                }
            }
        }
    }
    println!("{cases} faulted sessions, each bit-identical to the clean one after a retry");
}

#[test]
fn a_pulled_card_fails_every_retry_until_it_is_back() {
    let (expected, reads) = clean(true);
    let got = within(Duration::from_secs(60), move || {
        let mut session = Session::new(true);
        let mut attempts = 0;
        let logits = session.run(
            |s, m| {
                m.storage_mut().arm(if s == 1 {
                    Fault::FailFrom(reads[1] / 3)
                } else {
                    Fault::None
                })
            },
            |_, e, m| {
                attempts += 1;
                assert!(matches!(e, Error::Storage { tensor: Some(_), .. }), "{e:?}");
                if attempts == 3 {
                    m.storage_mut().arm(Fault::None);
                }
                true
            },
        );
        assert_eq!(attempts, 3);
        logits
    });
    assert!(got == expected);
}

#[test]
fn short_reads_of_any_length_change_no_bit() {
    let (expected, _) = clean(true);
    for fault in [Fault::Short { max: 1, seed: 0 }, Fault::Short { max: 700, seed: 3 }] {
        let got = within(Duration::from_secs(120), move || {
            let mut session = Session::new(true);
            let logits = session.run(
                |_, m| m.storage_mut().arm(fault),
                |s, e, _| panic!("{fault:?}, step {s}: {e}"),
            );
            let reads = session.model.storage().reads();
            (logits, reads)
        });
        assert!(got.0 == expected, "{fault:?}");
        println!("{fault:?}: {} reads in the last step", got.1);
    }
}

#[test]
fn data_that_ends_early_is_named_never_waited_for() {
    let model = Model::open(Recording::new(pack())).unwrap();
    let wte = model.layout().offset(TensorId::global(TensorKind::Wte));
    let c_fc = model.layout().offset(TensorId::layer(1, TensorKind::CFcWeight));
    for end in [c_fc + 1000, wte + 12345] {
        let err = within(Duration::from_secs(60), move || {
            let mut session = Session::new(false);
            let mut err = None;
            session.run(
                |_, m| m.storage_mut().arm(Fault::EofBeyond(end)),
                |_, e, m| {
                    err = Some(e);
                    m.storage_mut().arm(Fault::None);
                    true
                },
            );
            err
        });
        match err {
            Some(Error::UnexpectedEof { offset, tensor: Some(tensor) }) => {
                // The first read at or past the end: here the embedding row of the prompt's
                // first token, in wte.
                assert!(offset >= end, "{offset} < {end}");
                assert_eq!(tensor, tensor_at(&Session::new(false).model, offset));
            }
            other => panic!("data ending at {end}: {other:?}"),
        }
    }
}

#[test]
fn a_slow_card_is_slow_but_gives_the_same_bits() {
    let (expected, _) = clean(false);
    let got = within(Duration::from_secs(120), move || {
        let mut session = Session::new(false);
        session.run(
            |_, m| m.storage_mut().arm(Fault::Slow(Duration::from_micros(200))),
            |s, e, _| panic!("step {s}: {e}"),
        )
    });
    assert!(got == expected);
}

#[test]
fn open_names_every_failed_read() {
    let mut probe = Faulty::new(Recording::new(pack()), Fault::None);
    Model::open(&mut probe).unwrap();
    let reads = probe.reads();
    assert!(reads >= 3, "{reads}");
    for k in 0..reads {
        let mut storage = Faulty::new(Recording::new(pack()), Fault::FailAt(k));
        match Model::open(&mut storage) {
            Err(Error::Storage { source, offset, tensor: None }) => {
                assert_eq!((source.read, source.offset), (k, offset));
            }
            Err(other) => panic!("read {k}: {other:?}"),
            Ok(_) => panic!("read {k} failed, yet the pack opened"),
        }
        let mut storage = Faulty::new(Recording::new(pack()), Fault::EofAt(k));
        assert!(
            matches!(Model::open(&mut storage), Err(Error::UnexpectedEof { tensor: None, .. })),
            "EOF at read {k}"
        );
    }
    let mut storage = Faulty::new(Recording::new(pack()), Fault::FailSize);
    assert!(matches!(
        Model::open(&mut storage),
        Err(Error::Storage { offset: 0, tensor: None, .. })
    ));
}

#[test]
fn tokenizer_reads_that_fail_are_retried_to_the_same_tokens() {
    let mut model = Model::open(Faulty::new(Recording::new(pack()), Fault::None)).unwrap();
    let mut scratch = vec![0u32; 2 * TEXT.len() + 2];
    let mut ids = vec![0u32; TEXT.len()];
    model.storage_mut().arm(Fault::None);
    let n = model.encode(TEXT.as_bytes(), &mut scratch, &mut ids).unwrap();
    let expected = ids[..n].to_vec();
    let reads = model.storage().reads();
    for k in [0, reads / 3, reads - 1] {
        model.storage_mut().arm(Fault::FailAt(k));
        let err = model.encode(TEXT.as_bytes(), &mut scratch, &mut ids).unwrap_err();
        assert!(matches!(err, Error::Storage { tensor: None, .. }), "{err:?}");
        let n = model.encode(TEXT.as_bytes(), &mut scratch, &mut ids).unwrap();
        assert_eq!(ids[..n], expected[..], "retry after failing read {k}");
    }
    let mut buf = [0u8; MAX_TOKEN_BYTES as usize];
    model.storage_mut().arm(Fault::FailAt(1));
    assert!(matches!(model.token_bytes(464, &mut buf), Err(Error::Storage { .. })));
    assert_eq!(model.token_bytes(464, &mut buf).unwrap(), b"The");
}
