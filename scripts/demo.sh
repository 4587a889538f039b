#!/usr/bin/env bash
# The demo: pack the small learned GPT-2 shipped in weights/ (4 layers x 128, trained on this
# project's machines on the King James Bible by scripts/train-tiny.py: a tiny model, NOT
# OpenAI's GPT-2) int8, and run core's streaming forward pass on it, printing each token with
# its top-3 candidates; then the 4 x 32 model as the int4 pack that fits a Pico 2's flash.
# Every step is a plain host-tools command, echoed before it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-out/demo}
run() {
  printf '\n$'
  for arg in "$@"; do case $arg in *' '*) printf ' "%s"' "$arg" ;; *) printf ' %s' "$arg" ;; esac; done
  printf '\n'
  "$@"
}

tools=target/release/host-tools
if [ ! -x "$tools" ]; then
  echo "First build of host-tools: cargo compiles about 130 crates (a few minutes on 2 cores);"
  echo "later runs rebuild only what changed."
fi
run cargo build --release -p host-tools
mkdir -p "$out"
run "$tools" pack weights/kjv-4x128 -o "$out/kjv-4x128-int8.pgpt" --quant int8
run "$tools" run "$out/kjv-4x128-int8.pgpt" "And the king said unto" -n 8 --chunk-bytes 4096
run "$tools" run "$out/kjv-4x128-int8.pgpt" "Alan Turing theorized that computers would one day become" --quiet --temperature 0.8 --top-k 40 --seed 1
run "$tools" pack weights/kjv-4x32 -o "$out/kjv-4x32-int4.pgpt" --quant int4 --keep-int8 none
run "$tools" uf2 --bin "$out/kjv-4x32-int4.pgpt" -o "$out/kjv-4x32-int4.uf2"
run "$tools" run "$out/kjv-4x32-int4.pgpt" "And the king said unto" -n 8 --quiet
cat <<'NOTE'

These are tiny GPT-2-architecture models trained here, in 55 minutes on two shared CPU
cores, on the King James Bible (weights/README.md), with GPT-2's real tokenizer: English
words in the Bible's style, not OpenAI's GPT-2. The last one is the pack a Pico 2 without an SD card runs
from its flash (the UF2 above puts it at 0x10100000; firmware/README.md). With internet,
OpenAI's GPT-2 is one command away (downloads and packs it on first use; see README.md,
"Real GPT-2 weights"):
  target/release/host-tools run "Alan Turing theorized that computers would one day become" --model_size 124M --models_dir models
NOTE
