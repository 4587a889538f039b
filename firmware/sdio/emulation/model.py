"""Modeled SDIO throughput and Pico 2 time per token, from emulated PIO cycle counts.

Runs multi-block reads through the exported programs and the Rust protocol at 25 MHz and
50 MHz, takes the cycles per further block and the fixed cost of a read (CMD18, its response,
the first block's wait, CMD12 and its busy) from them, and prints, for a few chunk sizes and
card access latencies (the time a real card takes before a read's first block, which the
emulated card does not have), the modeled MB/s and the seconds per token of GPT-2 124M int8
(132.1 MB a token) with compute overlapped: max(I/O, compute).

    python model.py [--compute-s 2.3]
"""

import argparse

from sdcard import Faults, SdCard
from sdio_emu import build, run_host

TOKEN_BYTES = 132.1e6
BLOCK = 512


def transaction_cycles(built, count, high_speed):
    """(command to last CRC, command to CMD12 done) in system cycles for ``count`` blocks."""
    programs, host = built
    image = bytearray(2048 * BLOCK)
    card = SdCard(image, Faults(high_speed=high_speed, access_clocks=8))
    results, emulator = run_host(programs, host, card, ["init", "read", 0, count])
    assert results[-1].startswith("data"), results[-1]
    begin = emulator.marks["begin"]
    return emulator.marks["last_data_word"] - begin, emulator.marks["end"] - begin


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compute-s", type=float, default=2.3)
    args = parser.parse_args()
    built = build()
    sys_hz = built[0]["sys_clock_hz"]
    print("| SD clock | cycles/block | MB/s streaming | fixed cycles/read | "
          "chunk | card latency | MB/s | I/O s/token | s/token, compute overlapped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for high_speed, clock in ((False, "25 MHz"), (True, "50 MHz")):
        short, short_all = transaction_cycles(built, 8, high_speed)
        long, long_all = transaction_cycles(built, 16, high_speed)
        per_block = (long - short) / 8
        fixed = long_all - 16 * per_block
        streaming = BLOCK / (per_block / sys_hz) / 1e6
        for chunk_kib in (4, 32, 128):
            blocks = chunk_kib * 1024 // BLOCK
            for latency_us in (0, 250):
                seconds = (fixed + blocks * per_block) / sys_hz + latency_us * 1e-6
                rate = blocks * BLOCK / seconds / 1e6
                io = TOKEN_BYTES / (rate * 1e6)
                print(
                    f"| {clock} | {per_block:.0f} | {streaming:.2f} | {fixed:.0f} | "
                    f"{chunk_kib} KiB | {latency_us} µs | {rate:.2f} | {io:.2f} | "
                    f"{max(io, args.compute_s):.2f} |"
                )


if __name__ == "__main__":
    main()
