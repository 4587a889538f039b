#!/usr/bin/env bash
# The demo: synthesize a small GPT-2-architecture checkpoint (SYNTHETIC weights, not
# OpenAI's), pack it int8, and run core's streaming forward pass on it, printing each token
# with its top-3 candidates. Every step is a plain host-tools command, echoed before it runs.
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
run "$tools" synth --out "$out/model" --seed 1 --n-layer 4 --n-embd 256 --n-head 8 --n-ctx 256
run "$tools" pack "$out/model" -o "$out/model-int8.pgpt" --quant int8
run "$tools" run "$out/model-int8.pgpt" "Alan Turing theorized that computers would one day become" -n 8 --chunk-bytes 4096
cat <<'NOTE'

The weights above are synthetic (deterministic from the seed, GPT-2 architecture and
statistics) while the tokenizer is GPT-2's real one, so the text is real tokens in
random order, not English. With internet, OpenAI's GPT-2 is one command away (downloads
and packs it on first use; see README.md, "Real GPT-2 weights"):
  target/release/host-tools run "Alan Turing theorized that computers would one day become" --model_size 124M --models_dir models
NOTE
