#!/usr/bin/env bash
# Weight passes and host time per token with and without speculation (README "Speculation"):
# greedy, -n 64, one thread, --speculate 0 / 4 / 8 interleaved over 3 rounds, medians.
# Cases: the synthetic 124M (synth --seed 1) int8 on the seed prompt and on a repetitive one,
# the learned kjv-4x128 int8 on two prompts it loops on. Prints one Markdown row per case and K.
#   H=target/release/host-tools bash scripts/speculate-bench.sh   (W= chooses the work folder)
set -euo pipefail
cd "$(dirname "$0")/.."
H=${H:-target/release/host-tools}
W=${W:-target/speculate-bench}
mkdir -p "$W"
[ -f "$W/s124/model.safetensors" ] || "$H" synth --out "$W/s124" --seed 1 >/dev/null
[ -f "$W/s124-int8.pgpt" ] || "$H" pack "$W/s124" -o "$W/s124-int8.pgpt" --quant int8 >/dev/null
[ -f "$W/kjv-int8.pgpt" ] || "$H" pack weights/kjv-4x128 -o "$W/kjv-int8.pgpt" --quant int8 >/dev/null
turing="Alan Turing theorized that computers would one day become"
repeated="the cat sat on the mat. the cat sat on the mat. the cat sat on the mat. the cat"
echo "| pack | prompt | K | weight passes | passes / token | accepted / drafted | prefill ms | ms / token |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for case in "s124-int8|$turing" "s124-int8|$repeated" "kjv-int8|$turing" "kjv-int8|And the king said unto"; do
  pack=${case%%|*}
  prompt=${case#*|}
  for k in 0 4 8; do : >"$W/rows-$k.txt"; done
  for _ in 1 2 3; do
    for k in 0 4 8; do
      "$H" run "$W/$pack.pgpt" "$prompt" -n 64 --speculate "$k" --threads 1 --json "$W/report.json" >/dev/null
      python3 - "$W/report.json" >>"$W/rows-$k.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r.get("passes") or {}
n = len(r["steps"])
print(r["ms_per_token"], r["prefill_ms"], p.get("weight_passes", n), p.get("accepted_tokens", 0), p.get("drafted_tokens", 0), n)
PY
    done
  done
  for k in 0 4 8; do
    python3 - "$pack" "$prompt" "$k" "$W/rows-$k.txt" <<'PY'
import statistics, sys
pack, prompt, k, path = sys.argv[1:]
rows = [list(map(float, line.split())) for line in open(path)]
ms = statistics.median(r[0] for r in rows)
prefill = statistics.median(r[1] for r in rows)
passes, accepted, drafted, tokens = (int(v) for v in rows[0][2:])
print(f"| {pack} | {prompt[:40]!r} | {k} | {passes} | {passes / tokens:.2f} | {accepted}/{drafted} | {prefill:.1f} | {ms:.2f} |")
PY
  done
done
