"""The firmware's PIO programs, emulated cycle by cycle, against a pin-level SD card.

The PIO instruction memory, each program's wrap and each mode's pins come from the Rust
crate (``cargo run --example pio-programs``): nothing here restates a program word. The
protocol comes from the Rust crate too: ``examples/emulated_host.rs`` runs ``Card`` over a
state machine whose every start, push, pop and wait is a line on its stdout, which
:class:`Emulator` answers by running the PyPI ``rp2040-pio-emulator`` (``pioemu``) on the
exported words, with the card's pins wired in.

Pins are the board's wiring order: CLK, CMD, DAT0-3 on consecutive GPIOs (0-5 here). A mode's
IN base is rotated to pin 0 of the emulated state machine, as the hardware rotates IN pins,
since ``pioemu`` has no IN base of its own. Undriven lines read high (the pull-ups). The
state machine's FIFOs are emptied as fast as words arrive (the firmware's DMA keeps up), and
no time passes while the CPU side thinks: cycle counts are the bus's alone.
"""

import json
import subprocess
from pathlib import Path

from pioemu import State, emulate

from sdcard import SdCard

CRATE = Path(__file__).resolve().parent.parent
MASK = 0xFFFFFFFF


def rotate_right(value, by):
    by %= 32
    return ((value >> by) | (value << (32 - by))) & MASK


def rotate_left(value, by):
    return rotate_right(value, 32 - by % 32)


def build():
    """Builds the crate's examples; returns (programs JSON, path of the emulated host)."""
    subprocess.run(
        ["cargo", "build", "--quiet", "--examples"], cwd=CRATE, check=True
    )
    exported = subprocess.run(
        ["cargo", "run", "--quiet", "--example", "pio-programs"],
        cwd=CRATE,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    host = CRATE / "target" / "debug" / "examples" / "emulated-host"
    return json.loads(exported), host


class Contention(Exception):
    """Host and card drove the same line at once."""


class Emulator:
    """One PIO state machine running the exported programs, wired to ``card``."""

    def __init__(self, programs, card: SdCard):
        self.programs = programs
        self.card = card
        self.memory = programs["memory"]
        lines = programs["lines"]
        self.clk, self.cmd, self.dat0 = lines["clk"], lines["cmd"], lines["dat0"]
        self.bus_mask = (1 << lines["count"]) - 1
        # The host's pin state persists across programs, as the PIO's does.
        self.host_values = 0
        self.host_dirs = 1 << self.clk  # CLK is an output from the start
        self.sys_cycles = 0
        self.pio_cycles = 0
        self.clock_edges = 0
        self.generator = None
        self.state = None
        self.mode = None
        self.divider = 1
        self.base = 0
        self.origin = 0
        self.activation_start = 0
        self.marks = {}
        self.last_data_word = None
        self.contentions = 0

    # --- the bus ------------------------------------------------------------------------

    def _card_lines(self, now):
        """The lines as the card leaves them: its drive, and pull-ups elsewhere."""
        drive = self.card.outputs(now)
        values = self.bus_mask & ~(0b11111 << self.cmd)
        # Card bit 0 is CMD, bits 1-4 DAT0-3; undriven lines are pulled up.
        card_lines = 0
        for bit, pin in enumerate([self.cmd] + [self.dat0 + i for i in range(4)]):
            driven = (drive.mask >> bit) & 1
            level = (drive.values >> bit) & 1 if driven else 1
            card_lines |= level << pin
        return values | card_lines, drive

    def _inputs(self, state: State) -> int:
        lines, _ = self._card_lines(self.activation_start + state.clock)
        return rotate_right(lines, self.base)

    def _step(self):
        previous, current = next(self.generator)
        self.state = current
        elapsed = current.clock - previous.clock
        now = self.activation_start + previous.clock
        self.pio_cycles = self.activation_start + current.clock
        self.sys_cycles += elapsed * self.divider
        old_values = self.host_values
        self.host_values = rotate_left(current.pin_values, self.base) & self.bus_mask
        self.host_dirs = rotate_left(current.pin_directions, self.base) & self.bus_mask
        lines, drive = self._card_lines(now + 1)
        card_pins = 0
        for bit, pin in enumerate([self.cmd] + [self.dat0 + i for i in range(4)]):
            card_pins |= ((drive.mask >> bit) & 1) << pin
        if card_pins & self.host_dirs:
            self.contentions += 1
            raise Contention(
                f"host and card both drive {card_pins & self.host_dirs:#x} in {self.mode}"
            )
        bus = (lines & ~self.host_dirs) | (self.host_values & self.host_dirs)
        was_high = (old_values >> self.clk) & 1
        is_high = (self.host_values >> self.clk) & 1
        if is_high and not was_high:
            self.clock_edges += 1
            cmd = (bus >> self.cmd) & 1
            dat = (bus >> self.dat0) & 0xF
            drives_dat = (self.host_dirs >> self.dat0) & 0xF == 0xF
            self.card.rising(cmd, dat, drives_dat, now)
        elif was_high and not is_high:
            self.card.falling(now)
        if self.mode == "read_data" and len(current.receive_fifo) > len(previous.receive_fifo):
            self.last_data_word = self.sys_cycles

    # --- what the CPU does --------------------------------------------------------------

    def start(self, mode, divider):
        if self.mode is not None:
            # The firmware executes `set pindirs, 0` on the previous mode's SET pins first,
            # releasing any line a step cut short left driven.
            previous = self.programs["modes"][self.mode]
            set_pins = ((1 << previous["set_count"]) - 1) << previous["set_base"]
            self.host_dirs &= ~set_pins
        config = self.programs["modes"][mode]
        program = self.programs["programs"][config["program"]]
        shift = self.programs["shift"]
        self.mode, self.divider = mode, divider
        self.base = config["in_base"]
        self.origin = program["origin"]

        def virtual(pin):
            return (pin - self.base) % 32

        initial = State(
            program_counter=program["origin"],
            pin_values=rotate_right(self.host_values, self.base),
            pin_directions=rotate_right(self.host_dirs, self.base),
        )
        self.activation_start = self.pio_cycles
        self.generator = emulate(
            self.memory,
            stop_when=lambda _opcode, _state: False,
            initial_state=initial,
            input_source=self._inputs,
            auto_push=shift["autopush"],
            auto_pull=shift["autopull"],
            push_threshold=shift["threshold"],
            pull_threshold=shift["threshold"],
            shift_isr_right=not shift["in_left"],
            shift_osr_right=not shift["out_left"],
            out_base=virtual(config["out_base"]),
            out_count=config["out_count"],
            set_base=virtual(config["set_base"]),
            set_count=config["set_count"],
            side_set_base=virtual(config["side_set_base"]),
            side_set_count=program["side_set_bits"],
            jmp_pin=virtual(config["jmp_pin"]),
            wrap_target=program["wrap_target"],
            wrap_top=program["wrap_top"],
        )
        self.state = initial

    def _run_until(self, condition, timeout_us):
        limit = self.sys_cycles + timeout_us * self.programs["sys_clock_hz"] // 1_000_000
        while not condition():
            if self.sys_cycles >= limit:
                return False
            self._step()
        return True

    def push(self, word, timeout_us):
        if not self._run_until(lambda: len(self.state.transmit_fifo) < 4, timeout_us):
            return False
        self.state.transmit_fifo.append(word)
        return True

    def pop(self, timeout_us):
        if not self._run_until(lambda: len(self.state.receive_fifo) > 0, timeout_us):
            return None
        return self.state.receive_fifo.popleft()

    def park(self, timeout_us):
        return self._run_until(
            lambda: self.state.program_counter == self.origin and not self.state.transmit_fifo,
            timeout_us,
        )

    def micros(self):
        return self.sys_cycles * 1_000_000 // self.programs["sys_clock_hz"]


def run_host(programs, host, card, steps):
    """Runs the Rust protocol (``emulated-host STEPS``) against ``card``; returns the
    ``result`` lines and the emulator (for its cycle counts and marks)."""
    emulator = Emulator(programs, card)
    results = []
    process = subprocess.Popen(
        [str(host), *map(str, steps)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        for line in process.stdout:
            words = line.split()
            reply = "ok"
            match words:
                case ["hello"] | ["bye"]:
                    pass
                case ["start", mode, divider]:
                    emulator.start(mode, int(divider))
                case ["push", word, timeout]:
                    reply = "ok" if emulator.push(int(word, 16), int(timeout)) else "timeout"
                case ["pop", timeout]:
                    word = emulator.pop(int(timeout))
                    reply = "timeout" if word is None else f"word {word:#010x}"
                case ["park", timeout]:
                    reply = "ok" if emulator.park(int(timeout)) else "timeout"
                case ["micros"]:
                    reply = f"micros {emulator.micros()}"
                case ["mark", name]:
                    emulator.marks[name] = emulator.sys_cycles
                    if name == "begin":
                        emulator.last_data_word = None
                    else:
                        emulator.marks["last_data_word"] = emulator.last_data_word
                case ["result", *rest]:
                    results.append(" ".join(rest))
                case _:
                    raise ValueError(f"unknown request {line!r}")
            process.stdin.write(reply + "\n")
            process.stdin.flush()
    finally:
        process.stdin.close()
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"emulated-host exited with {code}")
    return results, emulator


def read_cycles(emulator):
    """System-clock cycles from the read command's start to the last CRC word."""
    end = emulator.marks.get("last_data_word")
    return None if end is None else end - emulator.marks["begin"]

