#!/usr/bin/env python3
"""Exact instruction counts per function of the emulated Cortex-M33, for one forward pass.

Runs the qemu-m33 firmware once under QEMU with `-d in_asm,exec,nochain` (every translated
block's instructions, then every execution of a block), attributes each executed block's
instructions to its function, and prints the functions by share, the total, and how many of
the instructions ran inside the matrices' row jobs (core's kernels and the row-splitting
closures: the work `Workers::run` shares between cores). The log is about 1.3 GB for GPT-2
124M and is deleted afterwards.

    python3 scripts/m33-profile.py PACK [--activations int16] [--tokens 36235]

Run `cargo build --release` in firmware/qemu-m33 first. With a one-token prompt and `-n 1`,
the run is one full pass over the weights plus the LM head: the work of one generated token.
"""
import argparse
import collections
import os
import subprocess
import tempfile

ROW_JOBS = ("kernels3m33", "kernels4int8", "stream_rows", "RowJob")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pack")
    ap.add_argument("--activations", default="int16")
    ap.add_argument("--tokens", default="36235")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    elf = os.path.join(root, "firmware/qemu-m33/target/thumbv8m.main-none-eabihf/release/picogpt-qemu-m33")
    guest = ["picogpt", os.path.abspath(args.pack), "--tokens", args.tokens, "-n", "1",
             "--kv", "int8", "--activations", args.activations, "--no-verify"]
    config = "enable=on,target=native," + ",".join("arg=" + a.replace(",", ",,") for a in guest)
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "exec.log")
        subprocess.run(["qemu-system-arm", "-machine", "mps2-an505", "-cpu", "cortex-m33",
                        "-display", "none", "-serial", "none", "-monitor", "none",
                        "-d", "in_asm,exec,nochain", "-D", log, "-semihosting-config", config,
                        "-kernel", elf], check=True, stdout=subprocess.DEVNULL)
        counts = count(log)
    total = sum(counts.values())
    jobs = sum(c for f, c in counts.items() if any(k in f for k in ROW_JOBS))
    for f, c in counts.most_common(args.top):
        print(f"{100 * c / total:5.1f}% {c:>11} {f[:120]}")
    print(f"total {total} instructions, {jobs} in row jobs ({100 * jobs / total:.1f}%)")


def count(log):
    """Instructions executed per function, from QEMU's in_asm and exec logs."""
    blocks, pending, counts = {}, None, collections.Counter()
    symbol, n, first, in_block = None, 0, None, False
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("IN: "):
                symbol, n, first, in_block = line[4:].strip(), 0, None, True
                continue
            if in_block:
                if line.startswith("0x"):
                    first = int(line[2:10], 16) if first is None else first
                    n += 1
                    continue
                in_block, pending = False, (first, n, symbol)
            if line.startswith("Trace "):
                parts = line.split()
                pc = int(parts[3][1:-1].split("/")[1], 16)
                if pending and pending[0] == pc:
                    blocks[parts[2]] = pending[1:]
                    pending = None
                size, name = blocks.get(parts[2], (0, "?"))
                counts[name] += size
    return counts


if __name__ == "__main__":
    main()
