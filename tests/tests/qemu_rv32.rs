//! The firmware of `firmware/qemu-rv32` on an emulated RISC-V board (QEMU `sifive_u`, RV32IMAC
//! like the ESP32-C6, 512 KiB of RAM) reads the pack from an emulated SD card over SPI — a
//! FAT32 card image made here with dosfstools and mtools — and prints what `host-tools run`
//! prints, logit bits included; reads it with multi-block reads only (counted from QEMU's own
//! `sdcard_*` trace); spills KV positions to `KV.BIN` on the card; and meets a missing card,
//! a missing or truncated pack and a file that is not a pack with one `error:` line each.
//!
//! Needs `qemu-system-riscv32`, `mkfs.fat`, `mcopy` and the `riscv32imac-unknown-none-elf`
//! target. Without them the tests say so and pass, unless `CI` is set.
//!
//! ```text
//! cargo test --release -p picogpt-tests --test qemu_rv32 -- --nocapture
//! ```

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::firmware::*;
use common::*;
use host_tools::run::{Prompt, RunOptions, run};
use picogpt_core::{Activations, MatrixFormat, ModelConfig};

/// Bytes the firmware reads per multi-block command while streaming (its pack window).
const WINDOW_BYTES: u64 = 16 * 1024;

/// The firmware crate.
fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/qemu-rv32")
}

/// Where this test's files go.
fn tmp() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu_rv32");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The firmware ELF, built once; `None` (the test is skipped) without QEMU or the FAT tools
/// outside CI.
fn firmware() -> Option<&'static Path> {
    static ELF: OnceLock<Option<PathBuf>> = OnceLock::new();
    ELF.get_or_init(|| {
        let tools = [
            ("qemu-system-riscv32", "Debian: apt-get install qemu-system-misc"),
            ("mkfs.fat", "Debian: apt-get install dosfstools"),
            ("mcopy", "Debian: apt-get install mtools"),
        ];
        let target = "riscv32imac-unknown-none-elf";
        (tools.iter().all(|(tool, how)| have(tool, "qemu_rv32", how))
            && have_target(&crate_dir(), target, "qemu_rv32"))
        .then(|| build_firmware(&crate_dir(), target, "picogpt-qemu-rv32"))
    })
    .as_deref()
}

/// Runs the firmware through the crate's runner with `args`, `QEMU_ARGS` set to `qemu_args`.
fn qemu(elf: &Path, args: &[&str], qemu_args: &str) -> Run {
    let env = [("QEMU_ARGS", qemu_args)];
    let out = run_runner("qemu_rv32", &crate_dir().join("qemu-run.sh"), elf, args, &env);
    if qemu_args.is_empty() {
        assert!(out.stderr.is_empty(), "qemu wrote to stderr with {args:?}: {}", out.stderr);
    }
    out
}

/// A card image of `mib` MiB (a power of two, as QEMU's SD card wants): an MBR with one FAT32
/// partition from 1 MiB, formatted by mkfs.fat, holding `files` (name on the card, file on
/// the host) in its root, copied by mcopy.
fn card_image(name: &str, mib: u64, files: &[(&str, &Path)]) -> PathBuf {
    let path = tmp().join(format!("{name}.img"));
    let bytes = mib << 20;
    let mut image = File::create(&path).unwrap();
    image.set_len(bytes).unwrap();
    let mut mbr = [0u8; 512];
    mbr[0x1be + 4] = 0x0c;
    mbr[0x1be + 8..0x1be + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[0x1be + 12..0x1be + 16].copy_from_slice(&((bytes / 512 - 2048) as u32).to_le_bytes());
    mbr[510..].copy_from_slice(&[0x55, 0xaa]);
    image.write_all(&mbr).unwrap();
    drop(image);
    let kib = ((bytes >> 10) - 1024).to_string();
    let status = Command::new("mkfs.fat")
        .args(["-F", "32", "--offset=2048", "--invariant"])
        .arg(&path)
        .arg(kib)
        .output()
        .unwrap();
    assert!(status.status.success(), "mkfs.fat: {}", String::from_utf8_lossy(&status.stderr));
    for (card_name, host) in files {
        mtools("mcopy", &path, &[host.to_str().unwrap(), &format!("::{card_name}")]);
    }
    path
}

/// Runs an mtools command on the card image's partition; returns its output.
fn mtools(tool: &str, image: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .arg("-i")
        .arg(format!("{}@@1M", image.display()))
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tiny model every firmware test runs, packed int8, on a card.
fn tiny() -> &'static (PathBuf, PathBuf) {
    static TINY_CARD: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TINY_CARD.get_or_init(|| {
        let pack = Fixture::new("qemu_rv32", TINY, 11).pack(
            "int8",
            MatrixFormat::Int8 { block: 32 },
            true,
        );
        let card = card_image("tiny", 64, &[("MODEL.PGP", &pack)]);
        (pack, card)
    })
}

#[test]
fn the_emulated_rv32_prints_what_the_host_prints_bit_for_bit() {
    let Some(elf) = firmware() else { return };
    let (pack, card) = tiny();
    let (card, tokens) = (card.to_str().unwrap(), ids(&PROMPT));
    for activations in Activations::ALL {
        let name = activations.name();
        let opts = RunOptions { activations, ..RunOptions::new(PROMPT.to_vec(), 4) };
        let (expected, steps) = host_lines(pack, &opts);
        let args = [
            "--sd",
            card,
            "--tokens",
            &tokens,
            "-n",
            "4",
            "--activations",
            name,
            "--bits",
            "--icount",
        ];
        let out = qemu(elf, &args, "");
        assert_eq!(out.code, Some(0), "{}", out.stdout);
        let (printed, bits) = step_lines(&out.stdout);
        assert_eq!(printed[..expected.len()], expected, "{name} activations:\n{}", out.stdout);
        assert_eq!(bits, host_bits(&steps), "{name} activations");
        let instructions = number_after(&out.stdout, "instructions per token: ")
            .unwrap_or_else(|| panic!("no instruction count in:\n{}", out.stdout));
        assert!(instructions > 0);
        println!(
            "qemu-rv32, {} layers x {}, vocab {}, {name} activations: instructions per token: \
             {instructions}",
            TINY.n_layer, TINY.n_embd, TINY.vocab_size
        );
    }
}

/// A compact pack (q4m–q6m matrices, the plain kernels on RV32) read from the card prints the
/// host's bits on every activation path. A 512-token vocabulary keeps the run short.
#[test]
fn a_compact_pack_prints_what_the_host_prints_bit_for_bit() {
    let Some(elf) = firmware() else { return };
    let small = ModelConfig {
        n_layer: 2,
        n_embd: 128,
        n_head: 2,
        n_ctx: 64,
        vocab_size: 512,
        layer_norm_epsilon: 1e-5,
    };
    let pack = Fixture::new("qemu_rv32_compact", small, 12)
        .pack_with("compact", &host_tools::pack::PackOptions::compact(0.7));
    let card = card_image("compact", 64, &[("MODEL.PGP", &pack)]);
    let prompt = [5, 17, 300];
    for activations in Activations::ALL {
        let name = activations.name();
        let opts = RunOptions { activations, ..RunOptions::new(prompt.to_vec(), 3) };
        let (expected, steps) = host_lines(&pack, &opts);
        let args = [
            "--sd",
            card.to_str().unwrap(),
            "--tokens",
            &ids(&prompt),
            "-n",
            "3",
            "--activations",
            name,
            "--bits",
        ];
        let out = qemu(elf, &args, "");
        assert_eq!(out.code, Some(0), "{}", out.stdout);
        let (printed, bits) = step_lines(&out.stdout);
        assert_eq!(printed[..expected.len()], expected, "compact, {name}:\n{}", out.stdout);
        assert_eq!(bits, host_bits(&steps), "compact, {name}");
    }
}

/// SD commands QEMU's card saw, by name (`CMD18`, `ACMD41`), and the blocks it read.
fn card_trace(stderr: &str) -> (BTreeMap<String, u64>, u64) {
    let mut commands = BTreeMap::new();
    let mut blocks = 0;
    for line in stderr.lines() {
        if line.contains("sdcard_read_block") {
            blocks += 1;
        }
        if line.contains("sdcard_normal_command") || line.contains("sdcard_app_command") {
            // `…/ CMD18 arg …` or `SD_SEND_OP_COND/ACMD41 arg …`.
            let name = line
                .split(|c: char| c.is_whitespace() || c == '/')
                .find(|w| w.starts_with("CMD") || w.starts_with("ACMD"))
                .unwrap_or("?");
            *commands.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    (commands, blocks)
}

#[test]
fn weights_are_read_with_multi_block_reads_only() {
    let Some(elf) = firmware() else { return };
    let (pack, card) = tiny();
    let (card, tokens) = (card.to_str().unwrap(), ids(&PROMPT));
    let trace = "-trace sdcard_normal_command -trace sdcard_app_command -trace sdcard_read_block";
    let traced = |n: &str| {
        let args = ["--sd", card, "--tokens", &tokens, "-n", n, "--activations", "int8"];
        let out = qemu(elf, &args, trace);
        assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
        (card_trace(&out.stderr), out.stdout)
    };
    let ((short, short_blocks), _) = traced("2");
    let ((long, long_blocks), stdout) = traced("6");
    let count = |m: &BTreeMap<String, u64>, cmd: &str| m.get(cmd).copied().unwrap_or(0);
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    // Per token: the four tokens the longer run generates beyond the shorter one.
    let per_token = |long: u64, short: u64| (long - short) as f64 / 4.0;
    let commands = per_token(total(&long), total(&short));
    let multi = per_token(count(&long, "CMD18"), count(&short, "CMD18"));
    let blocks = per_token(long_blocks, short_blocks);
    let data = count(&long, "CMD17") + count(&long, "CMD18");
    let single_share = count(&long, "CMD17") as f64 / data as f64;
    let pack_bytes = std::fs::metadata(pack).unwrap().len();
    let bound = pack_bytes as f64 / WINDOW_BYTES as f64 * 1.01;
    println!(
        "qemu-rv32 card, per token: {commands} SD commands ({multi} CMD18), {blocks} blocks \
         ({} bytes) read; CMD17 {:.2}% of {data} data commands; bound {bound:.0} commands \
         (pack {pack_bytes} bytes / {WINDOW_BYTES}-byte reads × 1.01); whole run: {long:?}",
        blocks * 512.0,
        100.0 * single_share
    );
    assert!(single_share <= 0.01, "{long:?}");
    assert!(commands <= bound, "{commands} commands per token, bound {bound}");
    // The firmware counts the same commands and blocks itself: its mean is over the steps
    // after the first (each pass and its lines), while the trace's difference also holds the
    // `generated:` text's look-ups, two reads (four commands) per token at most, and QEMU logs
    // the blocks the card had ready when a read was stopped, as well as the read-ahead window
    // dropped at the end of each pass (32 blocks, counted by the firmware in its bus bytes).
    let line = stdout.lines().find(|l| l.starts_with("sd per token: ")).expect("an sd line");
    let own = |word: &str| -> f64 {
        let before: Vec<&str> = line.split(word).next().unwrap().split_whitespace().collect();
        before.last().unwrap().trim_start_matches('(').parse().unwrap()
    };
    let near = |own: f64, trace: f64, extra: f64| own <= trace + 1.0 && own + extra + 1.0 >= trace;
    assert!(near(own(" commands"), commands, 4.0), "{line} vs {commands} commands");
    assert!(near(own(" CMD18"), multi, 2.0), "{line} vs {multi} CMD18");
    assert!(near(own(" blocks read"), blocks, 4.0 + multi + 32.0), "{line} vs {blocks} blocks");
    // Every block read is a weight the pass needs, give or take its windows' ends.
    let read = number_after(&stdout, "bytes read per token: ").unwrap() as f64;
    assert!(blocks * 512.0 < read * 1.02, "{blocks} blocks for {read} bytes");
}

#[test]
fn a_text_prompt_is_encoded_on_the_board_as_the_host_encodes_it() {
    let Some(elf) = firmware() else { return };
    let (pack, card) = tiny();
    let text = "Alan Turing theorized that computers would one day become";
    let opts = RunOptions {
        activations: Activations::Int8,
        ..RunOptions::with_prompt(Prompt::Text(text.into()), 3)
    };
    let (expected, steps) = host_lines(pack, &opts);
    let prompt = run(pack, &opts, |_| {}).unwrap().prompt;
    let mut args = vec!["--sd", card.to_str().unwrap()];
    args.extend(text.split(' '));
    args.extend(["-n", "3", "--bits", "--activations", "int8"]);
    let out = qemu(elf, &args, "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let (printed, bits) = step_lines(&out.stdout);
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    assert!(out.stdout.contains(&format!("\nprompt: {}\n", ids(&prompt))), "{}", out.stdout);
}

/// The learned 4 × 32 model packed int8, on the card: its prompt runs into a loop, so the
/// board's prompt-lookup drafts are accepted, and it prints the host's tokens, candidates,
/// logit bits and passes line.
#[test]
fn the_learned_model_speculates_on_the_card_as_the_host_does() {
    let Some(elf) = firmware() else { return };
    let checkpoint = Path::new(host_tools::learned::KJV_4X32_DIR);
    let pack = Fixture::read("qemu_rv32_learned", checkpoint).pack(
        "int8",
        MatrixFormat::Int8 { block: 32 },
        true,
    );
    let card = card_image("learned", 64, &[("MODEL.PGP", &pack)]);
    let text = "And the king said unto";
    let opts = RunOptions::with_prompt(Prompt::Text(text.into()), 24);
    let (expected, steps) = host_lines(&pack, &opts);
    let mut args = vec!["--sd", card.to_str().unwrap()];
    args.extend(text.split(' '));
    args.extend(["-n", "24", "--bits"]);
    let out = qemu(elf, &args, "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let (printed, bits) = step_lines(&out.stdout);
    // Everything the host prints from the first step on, the passes line included.
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    let passes = expected.last().unwrap();
    let weight_passes: usize = passes.split(' ').next().unwrap().parse().unwrap();
    assert!(passes.ends_with("drafted tokens accepted") && weight_passes < 24, "{passes}");
    println!("qemu-rv32, learned 4 x 32 int8: {passes}");
}

#[test]
fn a_context_beyond_the_ram_spills_to_kv_bin_on_the_card() {
    let Some(elf) = firmware() else { return };
    // 8 blocks of width 256: 16 KiB per position of an f32 KV cache.
    let deep = ModelConfig {
        n_layer: 8,
        n_embd: 256,
        n_head: 4,
        n_ctx: 128,
        vocab_size: 512,
        layer_norm_epsilon: 1e-5,
    };
    let pack = Fixture::new("qemu_rv32_deep", deep, 4).pack(
        "int8",
        MatrixFormat::Int8 { block: 32 },
        true,
    );
    let card = card_image("deep", 64, &[("MODEL.PGP", &pack)]);
    // 3 + 40 - 1 = 42 positions; the RAM holds about 27.
    let opts = RunOptions { activations: Activations::Int8, ..RunOptions::new(vec![1, 2, 3], 40) };
    let (expected, steps) = host_lines(&pack, &opts);
    let args = ["--sd", card.to_str().unwrap(), "--tokens", "1,2,3", "-n", "40", "--bits"];
    let args = [&args[..], &["--activations", "int8"]].concat();
    let out = qemu(elf, &args, "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let kv = out.stdout.lines().find(|l| l.starts_with("kv: ")).expect("a kv line");
    assert!(kv.contains(" + sd ") && kv.ends_with("positions (KV.BIN)"), "{kv}");
    let (printed, bits) = step_lines(&out.stdout);
    assert_eq!(printed[..expected.len()], expected, "{}", out.stdout);
    assert_eq!(bits, host_bits(&steps));
    let spilled: u64 =
        kv.split(" + sd ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let listing = mtools("mdir", &card, &["-b", "::KV.BIN"]);
    assert!(listing.contains("KV.BIN"), "{listing}");
    let kv_bin = tmp().join("kv.bin");
    let _ = std::fs::remove_file(&kv_bin);
    mtools("mcopy", &card, &["::KV.BIN", kv_bin.to_str().unwrap()]);
    let position = 8 * 2 * 256 * 4;
    assert_eq!(std::fs::metadata(&kv_bin).unwrap().len(), spilled * position, "{kv}");
}

/// Runs the firmware expecting failure with `code` and one `error:` line containing `needle`.
fn assert_fails(elf: &Path, args: &[&str], code: i32, needle: &str) {
    let out = qemu(elf, args, "");
    assert_eq!(out.code, Some(code), "{args:?}:\n{}", out.stdout);
    let errors: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{}", out.stdout);
    assert!(errors[0].contains(needle), "expected '{needle}' in: {}", errors[0]);
    assert!(!out.stdout.contains("panic"), "{}", out.stdout);
}

#[test]
fn a_missing_card_or_image_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    assert_fails(elf, &["--tokens", "1"], 1, "SD card: no card answers");
    let missing = tmp().join("no-such.img");
    assert_fails(
        elf,
        &["--sd", missing.to_str().unwrap(), "--tokens", "1"],
        1,
        "no such card image",
    );
    let odd = tmp().join("odd-size.img");
    std::fs::write(&odd, vec![0u8; 3 << 20]).unwrap();
    assert_fails(elf, &["--sd", odd.to_str().unwrap(), "--tokens", "1"], 1, "needs a power of two");
}

#[test]
fn a_card_without_a_pack_or_with_a_bad_one_is_one_error_line() {
    let Some(elf) = firmware() else { return };
    let (pack, _) = tiny();
    let bytes = std::fs::read(pack).unwrap();
    let dir = tmp();
    let (truncated, not_pack, other) =
        (dir.join("truncated.pgpt"), dir.join("notpack.pgpt"), dir.join("other.txt"));
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let mut bad = bytes.clone();
    bad[0] ^= 0x5a;
    std::fs::write(&not_pack, &bad).unwrap();
    std::fs::write(&other, b"not the pack").unwrap();
    let cases: [(&str, &Path, &str); 3] = [
        ("truncated", &truncated, "pack is truncated"),
        ("notpack", &not_pack, "not a picogpt pack"),
        ("nopack", &other, "MODEL.PGP: not in the card's root directory"),
    ];
    for (name, file, needle) in cases {
        let card_name = if name == "nopack" { "OTHER.TXT" } else { "MODEL.PGP" };
        let card = card_image(name, 64, &[(card_name, file)]);
        assert_fails(elf, &["--sd", card.to_str().unwrap(), "--tokens", "1", "-n", "1"], 1, needle);
    }
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let Some(elf) = firmware() else { return };
    let (_, card) = tiny();
    let card = card.to_str().unwrap();
    for args in [&["--sd", card, "-n", "x"][..], &["--sd", card, "--unknown"], &["--sd"]] {
        let out = qemu(elf, args, "");
        assert_eq!(out.code, Some(2), "{args:?}:\n{}", out.stdout);
        assert!(out.stdout.starts_with("error: "), "{}", out.stdout);
    }
}

/// GPT-2 124M's shape (synthetic weights), for the instruction counts the README quotes: a
/// quarter of an hour and more per run under `-icount`, so not in CI.
///
/// ```text
/// PICOGPT_QEMU_TIMEOUT=7200 cargo test --release -p picogpt-tests --test qemu_rv32 -- \
///     --ignored --nocapture
/// ```
#[test]
#[ignore]
fn gpt2_124m_instructions_per_token() {
    let Some(elf) = firmware() else { return };
    let pack = Fixture::new("qemu_rv32_124m", ModelConfig::GPT2_124M, 1).pack(
        "int8",
        MatrixFormat::Int8 { block: 32 },
        true,
    );
    let card = card_image("gpt2-124m", 256, &[("MODEL.PGP", &pack)]);
    for name in ["int8", "f32"] {
        let args = ["--sd", card.to_str().unwrap(), "--tokens", "36235", "-n", "2", "--kv", "int8"];
        let args = [&args[..], &["--activations", name, "--icount"]].concat();
        let out = qemu(elf, &args, "");
        assert_eq!(out.code, Some(0), "{}", out.stdout);
        println!("qemu-rv32, GPT-2 124M shape, {name} activations:\n{}", out.stdout);
    }
}
