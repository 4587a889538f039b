//! The command line end to end: synth → pack → reference and run, compared through their
//! JSON reports, and the verbose output format.

use std::path::Path;
use std::process::Command;

use host_tools::report::RunReport;

fn host_tools(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_host-tools")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "host-tools {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// `#1. 10598: -90.74231 ->  2.40%`: rank, id, logit with 5 decimals, percentage in 5 columns.
fn is_candidate_line(line: &str) -> bool {
    let Some((head, percent)) = line.split_once(" -> ") else { return false };
    let Some((rank_id, logit)) = head.split_once(": ") else { return false };
    let mut rank_id = rank_id.split(' ');
    let rank_ok = rank_id.next().is_some_and(|r| r.starts_with('#') && r.ends_with('.'));
    let id_ok = rank_id.next().is_some_and(|id| id.parse::<u32>().is_ok());
    let logit_ok = logit.parse::<f32>().is_ok() && logit.split('.').nth(1).map(str::len) == Some(5);
    let percent_ok = percent.len() == 6
        && percent.ends_with('%')
        && percent[..5].trim().parse::<f32>().is_ok()
        && percent[..5].split('.').nth(1).map(str::len) == Some(2);
    rank_ok && id_ok && logit_ok && percent_ok
}

#[test]
fn synth_pack_reference_and_run_agree_through_the_cli() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    let model = dir.join("model");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    host_tools(&[
        "synth",
        "--out",
        &s(&model),
        "--seed",
        "5",
        "--n-layer",
        "2",
        "--n-embd",
        "64",
        "--n-head",
        "4",
        "--n-ctx",
        "32",
    ]);
    let pack = dir.join("model-f32.pgpt");
    let summary = host_tools(&["pack", &s(&model), "-o", &s(&pack), "--quant", "f32"]);
    assert!(summary.contains("total"), "{summary}");

    let tokens = "464,3290,318";
    let (ref_json, run_json) = (dir.join("ref.json"), dir.join("run.json"));
    host_tools(&["reference", &s(&model), "--tokens", tokens, "-n", "4", "--json", &s(&ref_json)]);
    let printed = host_tools(&[
        "run",
        &s(&pack),
        "--tokens",
        tokens,
        "-n",
        "4",
        "--chunk-bytes",
        "1024",
        "--json",
        &s(&run_json),
    ]);
    let candidates: Vec<&str> = printed.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(candidates.len(), 12, "three candidates per step:\n{printed}");
    assert!(candidates.iter().all(|l| is_candidate_line(l)), "{printed}");

    let reference = RunReport::read(&ref_json).unwrap();
    let run = RunReport::read(&run_json).unwrap();
    assert_eq!(run.tokens(), reference.tokens());
    assert_eq!(run.prompt, vec![464, 3290, 318]);
    assert_eq!(run.model, reference.model);
    assert_eq!((run.quant.as_str(), reference.quant.as_str()), ("f32", "f32"));
    assert_eq!(reference.first_logits.as_ref().map(Vec::len), Some(50257));
    assert!(run.first_logits.is_none());
    let storage = host_tools::file_storage::FileStorage::open(&pack).unwrap();
    let model = picogpt_core::Model::open(storage).unwrap();
    let (weights_end, file_len) = (model.layout().weights_end(), model.layout().file_len());
    // Four steps, each one pass over every tensor but wpe (8 KiB here, read a row at a
    // time), plus the manifest; and once, the CRC check of wpe and the tokenizer sections.
    let unstreamed = file_len - weights_end + 16 * 1024;
    let (low, high) = (4 * (weights_end - 16 * 1024), 4 * weights_end + unstreamed + 64 * 1024);
    assert!((low..high).contains(&run.bytes_read), "{} not in {low}..{high}", run.bytes_read);
    assert!(run.working_bytes > 0 && run.prefill_ms > 0.0 && run.ms_per_token > 0.0);
    for (a, b) in run.steps.iter().zip(&reference.steps) {
        for (x, y) in a.top.iter().zip(&b.top) {
            assert_eq!(x.id, y.id);
            assert!((x.logit - y.logit).abs() <= 1e-4 + 1e-3 * y.logit.abs());
            assert!((x.prob - y.prob).abs() <= 1e-4);
        }
    }
}

#[test]
fn the_verbose_line_matches_picogpt() {
    assert!(is_candidate_line("#1. 10598: -90.74231 ->  2.40%"));
    assert!(!is_candidate_line("#1. 10598: -90.7423 ->  2.40%"));
    assert!(!is_candidate_line("#1. 10598: -90.74231 -> 2.40%"));
}

fn host_tools_fails(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_host-tools")).args(args).output().unwrap();
    assert!(!out.status.success(), "host-tools {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn text_in_text_out_like_picogpt() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-text");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let model = dir.join("124M");
    host_tools(&[
        "synth",
        "--out",
        &s(&model),
        "--seed",
        "9",
        "--n-layer",
        "2",
        "--n-embd",
        "64",
        "--n-head",
        "4",
        "--n-ctx",
        "64",
    ]);
    assert!(model.join("vocab.json").exists() && model.join("merges.txt").exists());
    let pack = model.join("model-int8.pgpt");
    host_tools(&["pack", &s(&model), "-o", &s(&pack)]);

    let seed = "Alan Turing theorized that computers would one day become";
    let expected = "36235,39141,18765,1143,326,9061,561,530,1110,1716\n";
    assert_eq!(host_tools(&["encode", seed]), expected);
    assert_eq!(host_tools(&["encode", "--pack", &s(&pack), seed]), expected);
    assert_eq!(host_tools(&["encode", "--model-dir", &s(&model), seed]), expected);
    let text_file = dir.join("seed.txt");
    std::fs::write(&text_file, seed).unwrap();
    assert_eq!(host_tools(&["encode", "--file", &s(&text_file)]), expected);
    assert_eq!(host_tools(&["decode", "36235,39141,18765"]), "Alan Turing theor\n");
    assert_eq!(host_tools(&["decode", "--pack", &s(&pack), "36235,39141"]), "Alan Turing\n");

    let verbose = host_tools(&["run", &s(&pack), seed, "-n", "3"]);
    let candidates: Vec<&str> = verbose.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(candidates.len(), 9, "{verbose}");
    for line in &candidates {
        // `#1. 10598 (' Rome'): -90.74231 ->  2.40%`: the text in Python repr between the id
        // and the logit.
        let (head, _) = line.split_once("): ").unwrap();
        assert!(head.contains(" ('") || head.contains(" (\""), "{line}");
    }
    // picoGPT's flags: --model_size/--models_dir find the same pack, -n has its long alias.
    let quiet = host_tools(&[
        "run",
        seed,
        "--n_tokens_to_generate",
        "3",
        "--quiet",
        "--model_size",
        "124M",
        "--models_dir",
        &s(&dir),
    ]);
    assert_eq!(
        verbose_text(&verbose),
        quiet.lines().next(),
        "quiet:\n{quiet}\nverbose:\n{verbose}"
    );
    assert_eq!(quiet.lines().count(), 1);

    let bad = host_tools_fails(&[
        "run".as_ref(),
        pack.as_os_str(),
        std::os::unix::ffi::OsStrExt::from_bytes(b"ab\xffc"),
    ]);
    assert!(bad.contains("not valid UTF-8 (byte 2 of 4)"), "{bad}");
    let too_long = host_tools_fails(&[
        "run".as_ref(),
        pack.as_os_str(),
        seed.as_ref(),
        "-n".as_ref(),
        "60".as_ref(),
    ]);
    assert!(too_long.contains("needs 69 positions, n_ctx is 64"), "{too_long}");
}

/// The text line the verbose output prints after `generated:`.
fn verbose_text(verbose: &str) -> Option<&str> {
    let mut lines = verbose.lines().skip_while(|l| !l.starts_with("generated:"));
    lines.next();
    lines.next()
}
