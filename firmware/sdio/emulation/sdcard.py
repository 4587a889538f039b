"""A pin-level SD card in SD (4-bit) bus mode, clocked by the emulated PIO's CLK.

The card samples CMD and DAT0-3 on CLK's rising edge and drives them after the falling edge
(default speed), or after the rising edge plus a delay in PIO cycles once CMD6 has switched
it to high speed (``hs_output_delay``). It knows the commands an SD host needs for
identification, multi-block reads, single-block writes and CMD6, and computes its CRC7s and
per-line CRC16s here, independently of the Rust crate. Faults on demand: CRC errors, a card
that stops answering, no high speed, no CMD6, standard capacity.

This is the pin-level twin of ``tests/sim`` in the Rust crate.
"""

from collections import deque
from dataclasses import dataclass, field


def crc7(bits):
    """CRC7 (x^7 + x^3 + 1) over a bit sequence."""
    crc = 0
    for bit in bits:
        feedback = ((crc >> 6) & 1) ^ bit
        crc = (crc << 1) & 0x7F
        if feedback:
            crc ^= 0x09
    return crc


def crc16(bits):
    """CRC16-CCITT (0x1021, initial 0) over a bit sequence."""
    crc = 0
    for bit in bits:
        feedback = ((crc >> 15) & 1) ^ bit
        crc = (crc << 1) & 0xFFFF
        if feedback:
            crc ^= 0x1021
    return crc


def bytes_to_bits(data):
    return [(b >> (7 - i)) & 1 for b in data for i in range(8)]


def data_nibbles(data):
    """A data block on four lines with its per-line CRC16s: start, data, CRC, end nibbles."""
    nibbles = []
    for b in data:
        nibbles += [b >> 4, b & 0xF]
    crcs = [crc16([(n >> line) & 1 for n in nibbles]) for line in range(4)]
    crc_nibbles = [
        sum(((crcs[line] >> (15 - i)) & 1) << line for line in range(4)) for i in range(16)
    ]
    return nibbles, crc_nibbles


@dataclass
class Faults:
    """What goes wrong with the card."""

    high_capacity: bool = True
    power_up_polls: int = 2
    has_cmd6: bool = True
    high_speed: bool = True
    # card block address -> how many times its CRC is sent wrong
    corrupt_blocks: dict = field(default_factory=dict)
    # the card stops answering anything after this many commands
    dies_after_commands: int | None = None
    # the card stops sending data after this many blocks of a read
    dies_after_blocks: int | None = None
    # PIO cycles between a rising edge and the card's new outputs in high speed
    hs_output_delay: int = 2
    # clocks between a read command's response (or the previous block) and a block's start
    access_clocks: int = 8
    # clocks the card stays busy after R1b and after a written block
    busy_clocks: int = 6
    # written blocks answered with a CRC error token, whatever they carry
    reject_writes: int = 0


@dataclass
class Drive:
    """What the card drives: values, and which lines (bit 0 CMD, bits 1-4 DAT0-3)."""

    values: int = 0
    mask: int = 0


RELEASED = None  # a stream entry for "drive nothing"


class SdCard:
    """The card. ``rising`` and ``falling`` are called on CLK's edges with the bus lines."""

    def __init__(self, image: bytearray, faults: Faults | None = None):
        self.image = image
        self.faults = faults or Faults()
        self.state = "idle"
        self.rca = 0x4567
        self.app = False
        self.polls = 0
        self.high_speed = False
        self.wide = False
        self.illegal = False
        self.log = []  # command indices received (ACMDs as 100 + n)
        self.dead = False
        self.cmd_in = None  # bits of a command being received
        self.cmd_stream = deque()  # CMD values for the coming output edges (None: release)
        self.dat_stream = None  # iterator of DAT nibbles (None entries: release)
        self.write_at = None  # block address a CMD24 will write
        self.write_in = None  # nibbles of a block being written
        self.drive = Drive()
        self.pending = deque()  # (pio time, Drive) changes not yet visible
        self.visible = Drive()
        self.blocks_sent = 0
        self.rejected_writes = 0
        self._switch_pending = False

    # --- what the host sees -------------------------------------------------------------

    def outputs(self, now):
        """The card's drive as seen at PIO time ``now``."""
        while self.pending and self.pending[0][0] <= now:
            self.visible = self.pending.popleft()[1]
        return self.visible

    # --- edges --------------------------------------------------------------------------

    def rising(self, cmd, dat, host_drives_dat, now):
        """CLK rose: sample CMD (bit) and DAT (nibble)."""
        self._sample(cmd, dat, host_drives_dat)
        if self.high_speed:
            self._advance()
            self.pending.append((now + 1 + self.faults.hs_output_delay, self.drive))

    def falling(self, now):
        """CLK fell: default-speed outputs change."""
        if not self.high_speed:
            self._advance()
            self.pending.append((now + 1, self.drive))

    # --- inside the card ----------------------------------------------------------------

    def _advance(self):
        values, mask = 0, 0
        if self.cmd_stream:
            bit = self.cmd_stream.popleft()
            if bit is not RELEASED:
                values |= bit
                mask |= 1
        if self.dat_stream is not None:
            nibble = next(self.dat_stream, RELEASED)
            if nibble is not RELEASED:
                value, lines = nibble
                values |= value << 1
                mask |= lines << 1
        if self.dead:
            values, mask = 0, 0
        self.drive = Drive(values, mask)

    def _sample(self, cmd, dat, host_drives_dat):
        if self.write_in is not None:
            self._sample_write(dat, host_drives_dat)
        if self.cmd_stream and any(b is not RELEASED for b in self.cmd_stream):
            return  # the card is answering: not listening
        if self.cmd_in is None:
            if cmd == 0:
                self.cmd_in = [0]
            return
        self.cmd_in.append(cmd)
        if len(self.cmd_in) == 48:
            bits, self.cmd_in = self.cmd_in, None
            self._command(bits)

    def _sample_write(self, dat, host_drives_dat):
        if not self.write_in:
            if host_drives_dat and dat & 1 == 0:
                self.write_in.append("start")
            return
        self.write_in.append(dat)
        if len(self.write_in) == 1 + 1024 + 16 + 1:
            nibbles = self.write_in[1:1025]
            received_crc = self.write_in[1025:1041]
            end = self.write_in[1041]
            self.write_in = None
            expected, crc_nibbles = data_nibbles(
                bytes((nibbles[2 * i] << 4) | nibbles[2 * i + 1] for i in range(512))
            )
            ok = crc_nibbles == received_crc and end == 0xF
            if ok and self.faults.reject_writes > 0:
                self.faults.reject_writes -= 1
                ok = False
            if ok and self.write_at is not None:
                start = self.write_at * 512
                self.image[start : start + 512] = bytes(
                    (nibbles[2 * i] << 4) | nibbles[2 * i + 1] for i in range(512)
                )
                status = [0, 1, 0]
            else:
                self.rejected_writes += 1
                status = [1, 0, 1]
            token = [(0, 1)] + [(b, 1) for b in status] + [(1, 1)]
            busy = [(0, 1)] * self.faults.busy_clocks
            self.dat_stream = iter([RELEASED, RELEASED] + token + busy)

    def _respond(self, index, payload, crc=True):
        head = [0, 0] + [(index >> (5 - i)) & 1 for i in range(6)]
        head += [(payload >> (31 - i)) & 1 for i in range(32)]
        check = crc7(head) if crc else 0x7F
        frame = head + [(check >> (6 - i)) & 1 for i in range(7)] + [1]
        self.cmd_stream = deque([RELEASED, RELEASED] + frame + [RELEASED])
        return len(self.cmd_stream)

    def _respond_r2(self, register):
        bits = bytes_to_bits(register[:15])
        check = crc7(bits)
        frame = [0, 0, 1, 1, 1, 1, 1, 1] + bits + [(check >> (6 - i)) & 1 for i in range(7)] + [1]
        self.cmd_stream = deque([RELEASED, RELEASED] + frame + [RELEASED])

    def _status(self):
        states = {"idle": 0, "ready": 1, "ident": 2, "standby": 3, "transfer": 4, "data": 5}
        illegal = 1 << 22 if self.illegal else 0
        self.illegal = False
        return (states[self.state] << 9) | illegal | (1 << 8)

    def _blocks(self):
        return len(self.image) // 512

    def _csd(self):
        csd = bytearray(16)
        if self.faults.high_capacity:
            c_size = self._blocks() // 1024 - 1
            csd[0] = 0x40
            csd[7], csd[8], csd[9] = (c_size >> 16) & 0x3F, (c_size >> 8) & 0xFF, c_size & 0xFF
        else:
            c_size = self._blocks() // 512 - 1
            csd[5] = 0x09
            csd[6], csd[7], csd[8] = (c_size >> 10) & 3, (c_size >> 2) & 0xFF, (c_size & 3) << 6
            csd[9], csd[10] = 0x03, 0x80
        return bytes(csd)

    def _read_stream(self, first, count, lead):
        """DAT nibbles for blocks from ``first`` (``count`` of them, or until CMD12)."""
        yield from [RELEASED] * lead
        block = first
        while count is None or block < first + count:
            if block >= self._blocks():
                return
            if (
                self.faults.dies_after_blocks is not None
                and self.blocks_sent >= self.faults.dies_after_blocks
            ):
                self.dead = True
                return
            data = bytes(self.image[block * 512 : block * 512 + 512])
            yield from self._block_nibbles(data, block)
            self.blocks_sent += 1
            block += 1
            yield from [RELEASED] * self.faults.access_clocks

    def _block_nibbles(self, data, block=None):
        nibbles, crc_nibbles = data_nibbles(data)
        if block is not None and self.faults.corrupt_blocks.get(block, 0) > 0:
            self.faults.corrupt_blocks[block] -= 1
            crc_nibbles = list(crc_nibbles)
            crc_nibbles[5] ^= 0x4
        yield (0, 0xF)
        for n in nibbles + crc_nibbles:
            yield (n, 0xF)
        yield (0xF, 0xF)

    def _command(self, bits):
        if bits[1] != 1 or bits[47] != 1 or crc7(bits[:40]) != int("".join(map(str, bits[40:47])), 2):
            return  # not a host command, or a bad CRC: ignored
        index = int("".join(map(str, bits[2:8])), 2)
        arg = int("".join(map(str, bits[8:40])), 2)
        app, self.app = self.app, False
        self.log.append(index + (100 if app else 0))
        if self.faults.dies_after_commands is not None and len(self.log) > self.faults.dies_after_commands:
            self.dead = True
        if self.dead:
            return
        f = self.faults
        lead = 0
        if index == 0:
            self.state, self.dat_stream, self.high_speed, self.wide = "idle", None, False, False
        elif index == 8 and not app:
            if f.high_capacity:
                self._respond(8, arg & 0xFFF)
            else:
                self.illegal = True  # a version 1 card does not know CMD8
        elif index == 55:
            self.app = True
            self._respond(55, self._status() | (1 << 5))
        elif index == 41 and app:
            self.polls += 1
            ready = self.polls > f.power_up_polls
            if ready:
                self.state = "ready"
            ccs = (1 << 30) if f.high_capacity and arg & (1 << 30) else 0
            self._respond(0x3F, 0x00FF8000 | ccs | ((1 << 31) if ready else 0), crc=False)
        elif index == 2 and self.state == "ready":
            self.state = "ident"
            self._respond_r2(bytes(range(16)))
        elif index == 3:
            self.state = "standby"
            self._respond(3, (self.rca << 16) | 0x0500)
        elif index == 9 and arg >> 16 == self.rca:
            self._respond_r2(self._csd())
        elif index == 7 and arg >> 16 == self.rca:
            status = self._status()
            self.state = "transfer"
            lead = self._respond(7, status)
            self.dat_stream = iter([RELEASED] * lead + [(0, 1)] * f.busy_clocks)
        elif index == 6 and app:
            self.wide = arg & 3 == 2
            self._respond(6, self._status())
        elif index == 6 and not f.has_cmd6:
            self.illegal = True
        elif index == 6:
            status = bytearray(64)
            status[13] = 0x03 if f.high_speed else 0x01
            status[16] = 0x01 if f.high_speed else 0x0F
            lead = self._respond(6, self._status())
            self.dat_stream = iter(
                [RELEASED] * (lead + f.access_clocks) + list(self._block_nibbles(bytes(status)))
            )
            if arg >> 31 and f.high_speed:
                self._switch_pending = True
        elif index in (13, 16):
            self._respond(index, self._status())
        elif index in (17, 18):
            block = arg if f.high_capacity else arg // 512
            status = self._status()
            if block >= self._blocks():
                self._respond(index, status | (1 << 31))
            else:
                self.state = "data"
                lead = self._respond(index, status)
                self.blocks_sent = 0
                self.dat_stream = self._read_stream(
                    block, 1 if index == 17 else None, lead + f.access_clocks
                )
        elif index == 12:
            self.state = "transfer"
            lead = self._respond(12, self._status())
            self.dat_stream = iter([RELEASED] * lead + [(0, 1)] * f.busy_clocks)
        elif index == 24:
            self.write_at = arg if f.high_capacity else arg // 512
            self.write_in = []
            self.dat_stream = None
            self._respond(24, self._status())
        else:
            self.illegal = True
        if self._switch_pending and index != 6:
            # The switch takes effect after CMD6's status block: by the next command.
            self._switch_pending = False
            self.high_speed = True
