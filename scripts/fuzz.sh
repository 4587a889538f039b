#!/usr/bin/env bash
# Fuzz one target for a given time with libFuzzer (needs nightly and cargo-fuzz:
# `rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz --locked`).
#
#   bash scripts/fuzz.sh TARGET SECONDS [libFuzzer flags…]     e.g.  scripts/fuzz.sh manifest 600 -fork=2
#
# TARGET is `manifest` (pack header, manifest, tensor table, then a run of what opens),
# `tokenizer` (edited vocabulary and BPE index sections, then encode/decode) or `checkpoint`
# (model.safetensors import). On first use the seed corpus fuzz/corpus/TARGET is generated
# from a tiny synthetic model (1 block × 32, 8 positions, 300 tokens) with host-tools synth and
# pack; the tokenizer target builds its GPT-2-vocabulary pack itself at start-up. A crash
# stops the run and leaves its input in fuzz/artifacts/TARGET. The build has no sanitizer
# (the fuzzed code is safe Rust, and it runs ten times faster); FUZZ_SANITIZER=address
# builds with ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/fuzz.sh manifest|tokenizer|checkpoint SECONDS [libFuzzer flags]"
target=${1:?$usage}
seconds=${2:?$usage}
shift 2
corpus=fuzz/corpus/$target

seeds() {
  cargo build --release -q -p host-tools
  local tools=target/release/host-tools tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  local shape=(--seed 1 --n-layer 1 --n-embd 32 --n-head 2 --n-ctx 8 --vocab-size 300)
  mkdir -p "$corpus"
  case $target in
    manifest)
      "$tools" synth --out "$tmp/model" "${shape[@]}" >/dev/null
      for quant in f32 f16 int8 int4; do
        "$tools" pack "$tmp/model" -o "$tmp/$quant.pgpt" --quant "$quant" >/dev/null
      done
      "$tools" pack "$tmp/model" -o "$tmp/int8-row.pgpt" --quant int8 --block 0 >/dev/null
      for pack in "$tmp"/*.pgpt; do
        for flags in '\x00' '\x03'; do
          { printf "$flags"; cat "$pack"; } >"$corpus/$(basename "$pack" .pgpt)-${flags:2}"
        done
      done
      ;;
    checkpoint)
      local variants=("--dtype f32" "--dtype f16 --transformer-prefix --lm-head" "--dtype bf16 --no-masks")
      for i in "${!variants[@]}"; do
        # shellcheck disable=SC2086
        "$tools" synth --out "$tmp/$i" "${shape[@]}" ${variants[$i]} >/dev/null
        cp "$tmp/$i/model.safetensors" "$corpus/variant-$i"
      done
      ;;
    tokenizer)
      local texts=(
        "Alan Turing theorized that computers would one day become"
        "I'm sure they've said it's 12345 times   over, haven't they?"
        "naïve café — 東京 🙂 Ünïcödé\tand\n\nnewlines"
        "    indented code() { return x->y[0] + 0x1f; }"
      )
      for i in "${!texts[@]}"; do printf '\x00%s' "${texts[$i]}" >"$corpus/text-$i"; done
      # One edit: the first vocabulary offset set to 0xffffffff.
      printf '\x01\x00\x00\x00\x00\xff\xff\xff\xffHello world' >"$corpus/edit-0"
      ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
}

if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
  seeds
fi
cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" "$target" "$corpus" -- -max_total_time="$seconds" -timeout=30 "$@"
