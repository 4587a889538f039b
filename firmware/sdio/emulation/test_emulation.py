"""The firmware's PIO program words, emulated cycle by cycle, under the Rust protocol, against a
pin-level SD card: identification, reads (single and multi-block, every line's CRC16 checked),
a corrupted CRC, a card that stops answering, writes, and what the cycle counts say.

Run with ``python -m pytest`` in this folder (needs ``pip install rp2040-pio-emulator`` and
cargo); ``.ci/run`` does.
"""

import pytest

from sdcard import Faults, SdCard
from sdio_emu import build, read_cycles, run_host

BLOCKS = 2048  # a 1 MiB card


@pytest.fixture(scope="session")
def built():
    return build()


def image():
    return bytearray(((i * 37) ^ (i >> 9) ^ (i >> 3)) & 0xFF for i in range(BLOCKS * 512))


def run(built, steps, **faults):
    programs, host = built
    card = SdCard(image(), Faults(**faults))
    results, emulator = run_host(programs, host, card, steps)
    return results, card, emulator


def data(result):
    kind, _, payload = result.partition(" ")
    assert kind == "data", result
    return bytes.fromhex(payload)


def pattern(block, seed):
    """What ``emulated-host write`` writes (``examples/emulated_host.rs``'s ``pattern``)."""
    return bytes(((block * 7) ^ (i * 13) ^ seed) & 0xFF for i in range(512))


def test_the_program_words_are_the_firmwares(built):
    programs, _ = built
    memory = programs["memory"]
    used = sum(p["length"] for p in programs["programs"].values())
    assert used == 26 and len(memory) == 32
    # Every program starts with `pull block` and the modes use only programs that exist.
    for program in programs["programs"].values():
        assert memory[program["origin"]] & 0xE0FF == 0x80A0
    assert {m["program"] for m in programs["modes"].values()} == set(programs["programs"])


def test_identification_reaches_4_bit_high_speed(built):
    results, card, _ = run(built, ["init", "read", 0, 1])
    assert results[0] == "init blocks=2048 high_capacity=true speed=High rca=0x4567"
    assert card.log == [0, 8, 55, 141, 55, 141, 55, 141, 2, 3, 9, 7, 55, 106, 6, 6, 17]
    # The card switched on CMD6 and drove the read on rising edges.
    assert card.wide and card.high_speed and card.state == "data"


def test_a_standard_capacity_card_without_high_speed(built):
    results, card, _ = run(
        built, ["init", "read", 9, 3], high_capacity=False, high_speed=False
    )
    assert results[0] == "init blocks=2048 high_capacity=false speed=Default rca=0x4567"
    assert data(results[1]) == bytes(image()[9 * 512 : 12 * 512])
    # CMD8 unanswered, CMD16 for the block length, CMD6 checked but no switch.
    assert card.log[1] == 8 and 16 in card.log and card.log.count(6) == 1
    assert not card.high_speed


def test_a_card_without_cmd6_stays_at_default_speed(built):
    results, card, _ = run(built, ["init", "read", 0, 2], has_cmd6=False)
    assert results[0].endswith("speed=Default rca=0x4567")
    assert data(results[1]) == bytes(image()[:1024])
    assert 13 in card.log


def test_a_single_block_read_is_cmd17(built):
    results, card, _ = run(built, ["init", "read", 2047, 1])
    assert data(results[1]) == bytes(image()[2047 * 512 :])
    assert card.log[-1] == 17


def test_a_multi_block_read_is_one_cmd18_with_every_crc_checked(built):
    results, card, emulator = run(built, ["init", "read", 100, 12])
    assert data(results[1]) == bytes(image()[100 * 512 : 112 * 512])
    assert card.log[-2:] == [18, 12]
    assert emulator.contentions == 0


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_high_speed_reads_hold_for_any_card_output_delay(built, delay):
    # In high speed the card drives on the rising edge, up to 14 ns (two PIO cycles) late:
    # the programs sample the same stream one clock earlier or later, consistently.
    results, _, _ = run(built, ["init", "read", 5, 3], hs_output_delay=delay)
    assert data(results[1]) == bytes(image()[5 * 512 : 8 * 512])


def test_a_corrupted_crc_is_detected_and_the_read_retried(built):
    results, card, _ = run(built, ["init", "read", 20, 4], corrupt_blocks={22: 1})
    assert data(results[1]) == bytes(image()[20 * 512 : 24 * 512])
    assert card.log[-4:] == [18, 12, 18, 12]


def test_a_crc_that_is_always_wrong_is_one_error(built):
    results, card, _ = run(built, ["init", "read", 20, 4], corrupt_blocks={21: 99})
    assert results[1] == "error block 21 failed its CRC16 on 3 attempts"
    assert card.log.count(18) == 3


def test_a_card_that_stops_answering_times_out(built):
    # Dies after identification: CMD18 gets no response within the (shortened) limit.
    results, _, _ = run(built, ["timeouts", 300, "init", "read", 0, 2], dies_after_commands=16)
    assert results[0].startswith("init blocks=2048")
    assert results[1] == "error no response to CMD18 (is a card in the slot?)"


def test_a_card_pulled_mid_transfer_times_out_on_the_block(built):
    results, _, _ = run(built, ["timeouts", 300, "init", "read", 30, 6], dies_after_blocks=3)
    assert results[1] == "error block 33 did not arrive (card pulled?)"


def test_no_card_at_all(built):
    results, _, _ = run(built, ["timeouts", 300, "init"], dies_after_commands=0)
    assert results == ["error no response to CMD55 (is a card in the slot?)"]


def test_writes_land_on_the_card_and_read_back(built):
    results, card, emulator = run(built, ["init", "write", 40, 3, 99, "read", 39, 5])
    assert results[1] == "written"
    expected = bytes(image()[39 * 512 : 40 * 512])
    expected += b"".join(pattern(b, 99) for b in range(40, 43))
    expected += bytes(image()[43 * 512 : 44 * 512])
    assert data(results[2]) == expected
    assert bytes(card.image[40 * 512 : 43 * 512]) == expected[512:2048]
    assert card.log.count(24) == 3 and card.rejected_writes == 0
    assert emulator.contentions == 0


def test_the_read_cycles_are_the_bus_cycles(built):
    # Each further block costs its 1040 nibbles, start and end bits and the card's gap, three
    # PIO cycles each at divider 1, plus the program's two cycles of `pull` and `out`.
    cycles = {}
    for count in (4, 8):
        results, _, emulator = run(built, ["init", "read", 64, count], access_clocks=8)
        assert data(results[1]) == bytes(image()[64 * 512 : (64 + count) * 512])
        cycles[count] = read_cycles(emulator)
    per_block = (cycles[8] - cycles[4]) / 4
    assert abs(per_block - (3 * (1040 + 2 + 8) + 2)) <= 2, per_block


def test_a_write_the_card_rejects_is_sent_again(built):
    results, card, _ = run(built, ["init", "write", 7, 1, 5, "read", 7, 1], reject_writes=2)
    assert results[1] == "written"
    assert card.log.count(24) == 3 and card.rejected_writes == 2
    assert data(results[2]) == pattern(7, 5)
