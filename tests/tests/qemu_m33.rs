//! The firmware of `firmware/qemu-m33` on an emulated Cortex-M33 (QEMU `mps2-an505`) prints
//! what `host-tools run` prints for the same pack and prompt (token ids, or text it encodes
//! itself), logit bits included, also when its KV cache spills beyond the RAM to a host file,
//! and when it speculates (the host's passes line too, on the learned model's loop), and meets
//! bad input with one `error:` line and a non-zero exit.
//!
//! Needs `qemu-system-arm` and the `thumbv8m.main-none-eabihf` target. Without either the tests
//! say so and pass, unless `CI` is set: then a missing QEMU fails them.
//!
//! ```text
//! cargo test --release -p picogpt-tests --test qemu_m33 -- --nocapture
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::firmware::*;
use common::*;
use host_tools::run::{Prompt, RunOptions, run};
use picogpt_core::speculate::DEFAULT_SPECULATE;
use picogpt_core::{Activations, MatrixFormat, ModelConfig};

/// The firmware crate.
fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/qemu-m33")
}

/// The firmware ELF, built once; `None` (with a message saying the test is skipped) when
/// QEMU is not installed outside CI.
fn firmware() -> Option<&'static Path> {
    static ELF: OnceLock<Option<PathBuf>> = OnceLock::new();
    ELF.get_or_init(|| {
        let target = "thumbv8m.main-none-eabihf";
        (have("qemu-system-arm", "qemu_m33", "Debian: apt-get install qemu-system-arm")
            && have_target(&crate_dir(), target, "qemu_m33"))
        .then(|| build_firmware(&crate_dir(), target, "picogpt-qemu-m33"))
    })
    .as_deref()
}

/// Runs the firmware through the crate's cargo runner (`qemu-run.sh`) with `args`.
fn qemu(elf: &Path, args: &[&str]) -> Run {
    let out = run_runner("qemu_m33", &crate_dir().join("qemu-run.sh"), elf, args, &[]);
    assert!(out.stderr.is_empty(), "qemu wrote to stderr with {args:?}: {}", out.stderr);
    out
}

/// The tiny model every firmware test runs, packed int8.
fn tiny_pack() -> &'static Path {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        Fixture::new("qemu_m33", TINY, 11).pack("int8", MatrixFormat::Int8 { block: 32 }, true)
    })
}

/// 8 blocks of width 256 and a 512-token vocabulary (so no tokenizer): 16 KiB per position
/// of an f32 KV cache, so the emulated board's RAM holds only 28 of its 128.
fn deep_fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let deep = ModelConfig {
            n_layer: 8,
            n_embd: 256,
            n_head: 4,
            n_ctx: 128,
            vocab_size: 512,
            layer_norm_epsilon: 1e-5,
        };
        Fixture::new("qemu_m33_deep", deep, 4)
    })
}

/// The deep model packed int8.
fn deep_pack() -> &'static Path {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| deep_fixture().pack("int8", MatrixFormat::Int8 { block: 32 }, true))
}

/// The deep model in q4m, q5m and q6m: the compact preset at a budget where it chooses all
/// three widths.
fn deep_compact_pack() -> &'static Path {
    static PACK: OnceLock<PathBuf> = OnceLock::new();
    PACK.get_or_init(|| {
        deep_fixture().pack_with("compact", &host_tools::pack::PackOptions::compact(0.7))
    })
}

#[test]
fn the_emulated_m33_prints_what_the_host_prints_bit_for_bit() {
    let Some(elf) = firmware() else { return };
    // The tiny model (one pair of blocks per row: the odd-pair path, every row a chunk's
    // whole row) and the deep one (rows of 4 and 16 pairs, several to a read).
    let deep_prompt: Vec<u32> = PROMPT.iter().map(|t| t % 512).collect();
    for (pack, prompt, shape) in [
        (tiny_pack(), &PROMPT[..], "2 layers x 64"),
        (deep_pack(), &deep_prompt[..], "8 layers x 256"),
        (deep_compact_pack(), &deep_prompt[..], "8 layers x 256, compact"),
    ] {
        let (path, tokens, n) = (pack.to_str().unwrap(), ids(prompt), 8);
        for activations in Activations::ALL {
            let name = activations.name();
            let opts = RunOptions { activations, ..RunOptions::new(prompt.to_vec(), n) };
            let (expected, steps) = host_lines(pack, &opts);
            let args =
                [path, "--tokens", &tokens, "-n", "8", "--activations", name, "--bits", "--icount"];
            let out = qemu(elf, &args);
            assert_eq!(out.code, Some(0), "{}", out.stdout);

            let (printed, bits) = step_lines(&out.stdout);
            assert_eq!(
                printed[..expected.len()],
                expected,
                "{shape}, {name} activations:\n{}",
                out.stdout
            );
            // The three best logits of every step have the host's exact bits.
            assert_eq!(bits, host_bits(&steps), "{shape}, {name} activations");

            let instructions = out
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("instructions per token: "))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no instruction count in:\n{}", out.stdout));
            assert!(instructions > 0);
            println!(
                "qemu-m33, {shape}, {name} activations: instructions per token: {instructions}"
            );
        }
    }
}

#[test]
fn the_emulated_m33_kernels_match_their_plain_twins() {
    let Some(elf) = firmware() else { return };
    let out = qemu(elf, &["--check-kernels"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let line = out.stdout.lines().find(|l| l.starts_with("kernels: ")).expect("a kernels line");
    assert!(line.starts_with("kernels: cortex-m33 dsp match the plain ones in "), "{line}");
    println!("qemu-m33: {line}");
}

/// Runs the firmware expecting failure: exit code 1 and an `error:` line containing `needle`,
/// which is returned.
fn assert_fails(elf: &Path, args: &[&str], needle: &str) -> String {
    let out = qemu(elf, args);
    assert_eq!(out.code, Some(1), "{args:?}:\n{}", out.stdout);
    let errors: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{}", out.stdout);
    assert!(errors[0].contains(needle), "expected '{needle}' in: {}", errors[0]);
    assert!(!out.stdout.contains("panic"), "{}", out.stdout);
    errors[0].to_owned()
}

#[test]
fn a_missing_file_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let missing = dir.join("qemu_m33_no_such.pgpt");
    let missing = missing.to_str().unwrap();
    assert_fails(elf, &[missing, "--tokens", "1"], "no such file or directory");
}

#[test]
fn a_corrupt_header_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    let bytes = std::fs::read(tiny_pack()).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_m33");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, usize, &str); 2] = [
        ("bad-magic.pgpt", 0, "not a picogpt pack"),
        ("bad-manifest.pgpt", 20, "manifest CRC mismatch"),
    ];
    for (name, offset, needle) in cases {
        let mut bad = bytes.clone();
        bad[offset] ^= 0x5a;
        let path = dir.join(name);
        std::fs::write(&path, &bad).unwrap();
        assert_fails(elf, &[path.to_str().unwrap(), "--tokens", "1", "-n", "1"], needle);
    }
    let truncated = dir.join("truncated.pgpt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(elf, &[truncated.to_str().unwrap(), "-n", "1"], "pack is truncated");
}

#[test]
fn a_text_prompt_is_encoded_on_the_board_as_the_host_encodes_it() {
    let Some(elf) = firmware() else { return };
    let pack = tiny_pack();
    let text = "Alan Turing theorized that computers would one day become";
    let opts = RunOptions::with_prompt(Prompt::Text(text.into()), 6);
    let (expected, steps) = host_lines(pack, &opts);
    let prompt = run(pack, &opts, |_| {}).unwrap().prompt;
    // QEMU's command line cannot carry a space inside an argument: one word each.
    let mut args = vec![pack.to_str().unwrap()];
    args.extend(text.split(' '));
    args.extend(["-n", "6", "--bits"]);
    let out = qemu(elf, &args);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let (printed, bits) = step_lines(&out.stdout);
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    assert!(out.stdout.contains(&format!("\nprompt: {}\n", ids(&prompt))), "{}", out.stdout);

    // No prompt at all starts from <|endoftext|>, as on the host.
    let (expected, _) = host_lines(pack, &RunOptions::with_prompt(Prompt::Text(String::new()), 2));
    let out = qemu(elf, &[pack.to_str().unwrap(), "-n", "2"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(step_lines(&out.stdout).0[..expected.len()], expected, "{}", out.stdout);
}

/// The learned 4 × 32 model packed int4 everywhere, the pack a Pico 2 without an SD card
/// reads from its flash (here QEMU reads it from a host file): the emulated M33 prints the
/// host's English, bit for bit. The prompt runs into a loop, so prompt-lookup drafts are
/// accepted: the board takes the host's passes for it, at the default draft length and at
/// 2, and says so in the host's passes line.
#[test]
fn the_learned_flash_sized_model_prints_english_on_the_m33() {
    let Some(elf) = firmware() else { return };
    let checkpoint = Path::new(host_tools::learned::KJV_4X32_DIR);
    let opts = host_tools::pack::PackOptions {
        overrides: Vec::new(),
        ..host_tools::pack::PackOptions::new(MatrixFormat::Int4, true)
    };
    let pack = Fixture::read("qemu_m33_learned", checkpoint).pack_with("int4-flash", &opts);
    let text = "And the king said unto";
    for speculate in [DEFAULT_SPECULATE, 2] {
        let run_opts =
            RunOptions { speculate, ..RunOptions::with_prompt(Prompt::Text(text.into()), 24) };
        let (expected, steps) = host_lines(&pack, &run_opts);
        let k = speculate.to_string();
        let mut args = vec![pack.to_str().unwrap()];
        args.extend(text.split(' '));
        args.extend(["-n", "24", "--speculate", &k, "--bits"]);
        let out = qemu(elf, &args);
        assert_eq!(out.code, Some(0), "{}", out.stdout);
        let (printed, bits) = step_lines(&out.stdout);
        // Everything the host prints from the first step on, the passes line included.
        assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
        assert_eq!(bits, host_bits(&steps));
        let passes = expected.last().unwrap();
        let weight_passes: usize = passes.split(' ').next().unwrap().parse().unwrap();
        assert!(passes.ends_with("drafted tokens accepted") && weight_passes < 24, "{passes}");
        let line = format!("speculate: {speculate} draft tokens per pass");
        assert!(out.stdout.lines().any(|l| l == line), "{}", out.stdout);
        println!("qemu-m33, learned 4 x 32 int4, --speculate {speculate}: {passes}");
        let generated = &expected[expected.len() - 2];
        println!("qemu-m33, learned 4 x 32 int4: {text:?} ->{generated:?}");
        // Words of the corpus, not stray tokens: ASCII letters, spaces and punctuation only.
        let prose = |c: char| c.is_ascii_alphabetic() || c.is_ascii_punctuation() || c == ' ';
        assert!(generated.chars().all(prose), "{generated:?}");
    }
}

/// A draft longer than the RAM's batch is cut to what it holds, and the board says so; the
/// text and the passes are then the host's at the draft length the board could take.
#[test]
fn a_draft_beyond_the_ram_is_cut_and_said() {
    let Some(elf) = firmware() else { return };
    // GPT-2 355M's width: a batch of 33 positions (--speculate 32) does not fit the arena.
    let wide = ModelConfig {
        n_layer: 1,
        n_embd: 1024,
        n_head: 16,
        n_ctx: 64,
        vocab_size: 512,
        layer_norm_epsilon: 1e-5,
    };
    let pack =
        Fixture::new("qemu_m33_wide", wide, 3).pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let tokens = [1, 2, 3, 1, 2, 3, 1, 2];
    let args =
        [pack.to_str().unwrap(), "--tokens", "1,2,3,1,2,3,1,2", "-n", "12", "--speculate", "32"];
    let out = qemu(elf, &args);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let line = out.stdout.lines().find(|l| l.starts_with("speculate: ")).expect("a speculate line");
    let given: usize = line["speculate: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(given < 32, "{line}");
    assert_eq!(
        line,
        format!(
            "speculate: {given} draft tokens per pass (32 asked; the RAM holds a batch of {})",
            given + 1
        )
    );
    let opts = RunOptions { speculate: given, ..RunOptions::new(tokens.to_vec(), 12) };
    let (expected, _) = host_lines(&pack, &opts);
    assert_eq!(step_lines(&out.stdout).0[..expected.len()], expected, "{}", out.stdout);
    println!("qemu-m33, 1 x 1024: {line}");
}

#[test]
fn a_pack_without_a_tokenizer_takes_token_ids_only() {
    let Some(elf) = firmware() else { return };
    let pack = deep_pack().to_str().unwrap();
    let args = [pack, "Alan", "Turing", "-n", "2"];
    assert_fails(elf, &args, "this pack has no tokenizer sections: give token ids instead of text");
}

#[test]
fn a_context_beyond_the_ram_spills_to_a_host_file() {
    let Some(elf) = firmware() else { return };
    let pack = deep_pack();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_m33");
    std::fs::create_dir_all(&dir).unwrap();
    let kv_file = dir.join("kv-spill.bin");
    let _ = std::fs::remove_file(&kv_file);
    let (path, kv_path) = (pack.to_str().unwrap(), kv_file.to_str().unwrap());

    // 3 + 60 - 1 = 62 positions; the RAM holds 28 of them.
    let opts = RunOptions::new(vec![1, 2, 3], 60);
    let (expected, steps) = host_lines(pack, &opts);
    let args = [path, "--tokens", "1,2,3", "-n", "60", "--kv-file", kv_path, "--bits"];
    let out = qemu(elf, &args);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let kv_line = out.stdout.lines().find(|l| l.starts_with("kv: ")).expect("a kv line");
    let spilled = format!("positions ({kv_path})");
    assert!(kv_line.contains(" + host ") && kv_line.ends_with(&spilled), "{kv_line}");
    let (printed, bits) = step_lines(&out.stdout);
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    // The host spilling to its own file under a RAM budget prints the same.
    let budget = RunOptions { ram_budget: Some(256 * 1024), ..opts };
    let (spilled_on_host, _) = host_lines(pack, &budget);
    assert_eq!(spilled_on_host, expected);
    let plan = run(pack, &budget, |_| {}).unwrap().kv.unwrap();
    assert!(plan.spilled_positions > 0, "{plan:?}");
    // 62 - 29 positions of 8 × 2 × 256 f32 values.
    let spill_bytes = std::fs::metadata(&kv_file).unwrap().len();
    assert_eq!(spill_bytes % (8 * 2 * 256 * 4), 0, "{spill_bytes}");

    // Without --kv-file the same request is one error naming the positions.
    let args = [path, "--tokens", "1,2,3", "-n", "60"];
    let error = assert_fails(elf, &args, "62 positions needed, the KV cache in RAM holds");
    assert!(error.contains("give --kv-file PATH"), "{error}");

    // A context that fits never touches the file.
    std::fs::remove_file(&kv_file).unwrap();
    let out = qemu(elf, &[path, "--tokens", "1,2,3", "-n", "4", "--kv-file", kv_path]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(!kv_file.exists());
}

#[test]
fn a_model_wider_than_gpt2_124m_runs_in_the_arena() {
    let Some(elf) = firmware() else { return };
    // GPT-2 355M's width: its workspace is carved per request from the RAM the statics leave,
    // so it fits (at batch 2 here) beside its KV cache.
    let wide = ModelConfig {
        n_layer: 1,
        n_embd: 1024,
        n_head: 16,
        n_ctx: 32,
        vocab_size: 512,
        layer_norm_epsilon: 1e-5,
    };
    let pack =
        Fixture::new("qemu_m33_wide", wide, 3).pack("int8", MatrixFormat::Int8 { block: 32 }, true);
    let (expected, _) = host_lines(&pack, &RunOptions::new(vec![1, 2], 2));
    let out = qemu(elf, &[pack.to_str().unwrap(), "--tokens", "1,2", "-n", "2"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(out.stdout.contains("(batch 2, "), "{}", out.stdout);
    assert_eq!(step_lines(&out.stdout).0[..expected.len()], expected, "{}", out.stdout);
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let Some(elf) = firmware() else { return };
    let pack = tiny_pack().to_str().unwrap();
    let cases = [
        &[pack, "-n", "x"][..],
        &[pack, "--kv", "f64"],
        &[pack, "--tokens", "1,x"],
        &[pack, "--tokens", "1", "Alan"],
        &[pack, "--kv-file"],
        &[pack, "--unknown"],
        &[],
    ];
    for args in cases {
        let out = qemu(elf, args);
        assert_eq!(out.code, Some(2), "{args:?}:\n{}", out.stdout);
        assert!(out.stdout.starts_with("error: "), "{}", out.stdout);
        assert!(out.stdout.contains("usage: picogpt FILE"), "{}", out.stdout);
    }
}
