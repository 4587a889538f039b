//! A timing model of the SD boards (`host-tools bench --board pico2|esp32c6`): what one token
//! costs on the card's SPI bus and on the CPU, and how long the default request takes, from a
//! pack's layout, the boards' RAM, and instruction counts measured under emulation.
//!
//! The read path it models (`firmware/common`): one CMD18 left open while a pass streams
//! through the file, 16 KiB windows clocked in by DMA while the CPU computes on the previous
//! one, so a pass takes the longer of its bus time and its CPU time; CMD12 and a new CMD18 for
//! each jump (the token's `wte` and `wpe` rows, the token texts printed after the pass, the
//! KV records spilled to `KV.BIN`).

use picogpt_core::format::{TensorId, TensorKind};
use picogpt_core::kv::bytes_per_position;
use picogpt_core::layout::Layout;
use picogpt_core::{Activations, KvFormat, Workspace, WorkspaceSpec};

/// Bytes per SD block.
const BLOCK: u64 = 512;
/// Bytes of the pack window: one DMA run, one stretch of the open multi-block read.
const WINDOW: u64 = 16 * 1024;
/// Bytes per core read (`CHUNK_BYTES` of the boards).
const CHUNK: usize = 4096;

/// The board being modelled.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// Its name on the command line.
    pub name: &'static str,
    /// SPI clock while reading, Hz.
    pub spi_hz: f64,
    /// CPU clock, Hz.
    pub cpu_hz: f64,
    /// Bytes of RAM each request splits between workspace and KV cache (the firmware's
    /// arena, from its link map).
    pub arena: usize,
    /// The activation path its console uses by default.
    pub activations: Activations,
    /// Instructions per GPT-2 124M token, int8 path, measured under emulation.
    pub int8_instructions: u64,
    /// The same, f32 path.
    pub f32_instructions: u64,
    /// Where the counts come from.
    pub emulator: &'static str,
}

/// The Pico 2: SPI0 at 25 MHz, one Cortex-M33 computing at 150 MHz, a 445,500-byte arena
/// (`firmware/pico2`'s link map). Instructions: qemu-m33, GPT-2 124M shape, `--icount`.
pub const PICO2: Board = Board {
    name: "pico2",
    spi_hz: 25e6,
    cpu_hz: 150e6,
    arena: 445_500,
    activations: Activations::F32,
    int8_instructions: 353_522_650,
    f32_instructions: 1_145_360_650,
    emulator: "qemu-m33 (Cortex-M33)",
};

/// The ESP32-C6: SPI2 at 20 MHz (80 MHz APB / 4), one RISC-V core at 160 MHz without an FPU,
/// a 368,640-byte arena (`firmware/esp32c6`'s static). Instructions: qemu-rv32 (RV32IMAC,
/// soft float), GPT-2 124M shape, `--icount`, the SPI loops left out (DMA on the C6), int8
/// path; the f32 path is an estimate, the M33's count times the ratio of qemu-rv32's to
/// qemu-m33's f32 counts on the tiny test model (910,943,644 / 56,555,700 = 16.1).
pub const ESP32C6: Board = Board {
    name: "esp32c6",
    spi_hz: 20e6,
    cpu_hz: 160e6,
    arena: 368_640,
    activations: Activations::Int8,
    int8_instructions: 3_699_305_332,
    f32_instructions: 18_448_000_000,
    emulator: "qemu-rv32; f32 estimated",
};

/// The Pico 2's SDIO bus at 25 MHz, 32 KiB reads with 250 µs card latency (firmware/README.md,
/// from the emulated PIO cycle counts).
pub const SDIO_25MHZ_BYTES_PER_S: f64 = 11.12e6;
/// The same at 50 MHz (high speed).
pub const SDIO_50MHZ_BYTES_PER_S: f64 = 20.49e6;

/// Instructions per token of a pack with q4m–q6m matrices over the int8 pack's, integer
/// activation paths: qemu-m33 `--icount`, the `qemu_m33` test's 8 × 256 model packed compact
/// (63,590,250: unpacking in Rust, the sums in the int8 kernels' `SMLAD` block) against int8
/// (15,218,950).
pub const AFFINE_INT_RATIO: f64 = 63_590_250.0 / 15_218_950.0;
/// The same on the f32 path, plain kernels (141,729,450 against 20,271,700).
pub const AFFINE_F32_RATIO: f64 = 141_729_450.0 / 20_271_700.0;

/// Instructions per token of `layout`'s pack on `board`'s `activations` path: the board's
/// measured int8 count, scaled by [`AFFINE_INT_RATIO`] or [`AFFINE_F32_RATIO`] when the pack
/// has q4m–q6m matrices.
pub fn instructions(layout: &Layout, board: &Board, activations: Activations) -> u64 {
    let affine = (0..layout.tensor_count())
        .any(|i| layout.format(layout.id_at(i)).dtype.affine_bits().is_some());
    let (count, ratio) = match activations {
        Activations::Int8 | Activations::Int16 => (board.int8_instructions, AFFINE_INT_RATIO),
        Activations::F32 => (board.f32_instructions, AFFINE_F32_RATIO),
    };
    if affine { (count as f64 * ratio) as u64 } else { count }
}

/// The model's assumptions about the card and the CPU.
#[derive(Clone, Copy, Debug)]
pub struct Assumptions {
    /// Seconds from a read command to its first block (the card's access latency).
    pub access_latency: f64,
    /// Bytes clocked per command besides data: the command, NCR, R1, CMD12's and busy.
    pub command_bytes: u64,
    /// Idle bytes the card sends before each block of a multi-block read.
    pub gap_bytes: u64,
    /// CPU instructions per byte to take blocks off the wire and check their CRC16.
    pub crc_instructions_per_byte: f64,
    /// CPU cycles per emulated instruction.
    pub cycles_per_instruction: f64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            access_latency: 300e-6,
            command_bytes: 24,
            gap_bytes: 2,
            crc_instructions_per_byte: 4.5,
            cycles_per_instruction: 1.0,
        }
    }
}

/// What one generated token costs.
#[derive(Clone, Copy, Debug)]
pub struct Token {
    /// Bytes core reads from the pack.
    pub pack_bytes: u64,
    /// Bytes clocked on the SPI bus (data, tokens, CRCs, gaps, commands).
    pub bus_bytes: u64,
    /// SD commands.
    pub commands: u64,
    /// Seconds the bus is busy.
    pub io_seconds: f64,
    /// Seconds the CPU is busy (forward pass, deframing and CRC).
    pub cpu_seconds: f64,
}

impl Token {
    /// Seconds per token with the transfers overlapping the computation (the firmware).
    pub fn overlapped(&self) -> f64 {
        self.io_seconds.max(self.cpu_seconds)
    }

    /// Seconds per token if reading and computing took turns.
    pub fn serial(&self) -> f64 {
        self.io_seconds + self.cpu_seconds
    }
}

/// Bytes one pass reads: every block's tensors and `ln_f` in file order, `wte` whole for the
/// tied LM head, and one row each of `wte` and `wpe`.
pub fn pass_bytes(layout: &Layout) -> u64 {
    let mut bytes = 0;
    for index in 0..layout.tensor_count() {
        let id = layout.id_at(index);
        if id != TensorId::global(TensorKind::Wpe) {
            bytes += layout.expected_entry(id).len;
        }
    }
    let row = |kind| layout.row_bytes(TensorId::global(kind)) as u64;
    bytes + row(TensorKind::Wte) + row(TensorKind::Wpe)
}

/// Bus time of `blocks` data blocks and `commands` commands.
fn io_seconds(blocks: u64, commands: u64, board: &Board, a: &Assumptions) -> (u64, f64) {
    let bus = blocks * (BLOCK + 3 + a.gap_bytes) + commands * a.command_bytes;
    let seconds = bus as f64 * 8.0 / board.spi_hz + commands as f64 * a.access_latency;
    (bus, seconds)
}

/// One token's cost: `commands` SD commands per token (measured on the emulated card: its
/// pass's three reads and their stops, and the token texts of the lines it prints) plus
/// `spill` KV positions read back from `KV.BIN` in every layer and one written.
pub fn token(
    layout: &Layout,
    board: &Board,
    activations: Activations,
    commands: u64,
    spill: usize,
    a: &Assumptions,
) -> Token {
    let pack_bytes = pass_bytes(layout);
    let cfg = layout.config();
    let record = bytes_per_position(cfg, KvFormat::Int8) as u64 / u64::from(cfg.n_layer);
    let layers = u64::from(cfg.n_layer);
    // The pass's window read past its end, and each row and KV record rounded to blocks.
    let pass_blocks = (pack_bytes + WINDOW).div_ceil(BLOCK) + 4;
    let kv_blocks = if spill == 0 {
        0
    } else {
        layers * ((spill as u64 * record).div_ceil(BLOCK) + 2 * record.div_ceil(BLOCK))
    };
    // Per layer: a read of the spilled records (one per 4 KiB window), and a write's read and
    // write; each read is a CMD18 and a CMD12.
    let kv_commands =
        if spill == 0 { 0 } else { layers * ((spill as u64 * record).div_ceil(4096) * 2 + 3) };
    let (bus_bytes, io_seconds) =
        io_seconds(pass_blocks + kv_blocks, commands + kv_commands, board, a);
    let instructions = instructions(layout, board, activations) as f64;
    let crc = bus_bytes as f64 * a.crc_instructions_per_byte;
    let cpu_seconds = (instructions + crc) * a.cycles_per_instruction / board.cpu_hz;
    Token { pack_bytes, bus_bytes, commands: commands + kv_commands, io_seconds, cpu_seconds }
}

/// How the firmware splits the board's RAM for a request (`firmware/common`'s
/// `budget::choose_batch`): the fewest prompt passes first, then the smallest batch giving
/// them, the KV cache in the rest, spilling what does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Prompt positions per pass.
    pub batch: usize,
    /// Passes over the weights for the prompt.
    pub passes: usize,
    /// KV positions in RAM.
    pub kv_in_ram: usize,
    /// KV positions spilled to `KV.BIN`.
    pub spilled: usize,
}

/// The split of `board`'s arena for a prompt of `prompt` tokens and `n` generated.
pub fn split(
    layout: &Layout,
    board: &Board,
    activations: Activations,
    prompt: usize,
    n: usize,
) -> Split {
    let position = bytes_per_position(layout.config(), KvFormat::Int8);
    let record = position / layout.config().n_layer as usize;
    let needed = prompt + n - 1;
    let workspace = |batch| {
        Workspace::bytes(layout, &WorkspaceSpec::new(batch, CHUNK).with_activations(activations))
    };
    let floor = (needed * position).min(record);
    let batch = (1..=prompt)
        .map(|passes| prompt.div_ceil(passes))
        .find(|&b| workspace(b) + floor <= board.arena)
        .unwrap_or(1);
    let rest = board.arena.saturating_sub(workspace(batch));
    let kv_in_ram =
        if rest >= needed * position { needed } else { rest.saturating_sub(record) / position };
    Split { batch, passes: prompt.div_ceil(batch), kv_in_ram, spilled: needed - kv_in_ram }
}

/// Seconds of the request: the prompt's passes (each computing `batch` positions, so
/// `batch` times the CPU work of a token, overlapped with one pass of reading), then `n - 1`
/// tokens.
pub fn request_seconds(prompt_pass: &Token, split: &Split, token: &Token, n: usize) -> f64 {
    let pass = prompt_pass.io_seconds.max(prompt_pass.cpu_seconds * split.batch as f64);
    split.passes as f64 * pass + (n - 1) as f64 * token.overlapped()
}

/// The table `bench --board` prints for `layout` on `board`, with `commands` SD commands per
/// token, and the assumptions it rests on.
pub fn report(layout: &Layout, board: &Board, commands: u64, a: &Assumptions) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let cfg = layout.config();
    let _ = writeln!(
        out,
        "{}: SPI {:.0} MHz, CPU {:.0} MHz, arena {} bytes; {} layers x {}, {}",
        board.name,
        board.spi_hz / 1e6,
        board.cpu_hz / 1e6,
        board.arena,
        cfg.n_layer,
        cfg.n_embd,
        layout.quant().matrices
    );
    let _ = writeln!(
        out,
        "\n| activations | pack bytes/token | bus bytes/token | SD commands/token | instructions/token ({}) | bus s/token | CPU s/token | s/token, overlapped | s/token, serial | default request (10-token prompt, -n 8) |",
        board.emulator
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for activations in [Activations::Int8, Activations::F32] {
        let s = split(layout, board, activations, 10, 8);
        let t = token(layout, board, activations, commands, s.spilled, a);
        let prompt = token(layout, board, activations, commands, 0, a);
        let request = request_seconds(&prompt, &s, &t, 8);
        let instructions = instructions(layout, board, activations);
        let default = if activations == board.activations { ", the console's default" } else { "" };
        let _ = writeln!(
            out,
            "| {activations:?}{default} | {} | {} | {} | {instructions} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} min: batch {}, {} pass(es), {} KV positions in RAM + {} in KV.BIN |",
            t.pack_bytes,
            t.bus_bytes,
            t.commands,
            t.io_seconds,
            t.cpu_seconds,
            t.overlapped(),
            t.serial(),
            request / 60.0,
            s.batch,
            s.passes,
            s.kv_in_ram,
            s.spilled
        );
    }
    if board.name == PICO2.name {
        let bytes = pass_bytes(layout) as f64;
        let _ = writeln!(
            out,
            "\nSDIO (`--features sdio`, 32 KiB reads with 250 us card latency, firmware/README.md): \
             {:.1} s/token of I/O at 25 MHz ({SDIO_25MHZ_BYTES_PER_S:.3e} B/s), {:.1} s at 50 MHz \
             ({SDIO_50MHZ_BYTES_PER_S:.3e} B/s)",
            bytes / SDIO_25MHZ_BYTES_PER_S,
            bytes / SDIO_50MHZ_BYTES_PER_S
        );
    }
    if instructions(layout, board, Activations::Int8) != board.int8_instructions {
        let _ = writeln!(
            out,
            "\ninstructions: the int8 pack's measured counts x {AFFINE_INT_RATIO:.2} (integer paths) \
             and x {AFFINE_F32_RATIO:.2} (f32), the q4m-q6m kernels' cost on qemu-m33's 8 x 256 \
             model (AFFINE_INT_RATIO, AFFINE_F32_RATIO)"
        );
    }
    let _ = writeln!(
        out,
        "\nassumptions: card access latency {:.0} us per read command, {} bytes clocked per command, \
         {} idle bytes before each block, {} CPU instructions per byte to deframe and check CRC16, \
         {} cycle(s) per emulated instruction; reads overlap computation (16 KiB DMA windows); \
         a prompt pass computes its batch at once while reading the weights once",
        a.access_latency * 1e6,
        a.command_bytes,
        a.gap_bytes,
        a.crc_instructions_per_byte,
        a.cycles_per_instruction
    );
    out
}

#[cfg(test)]
mod tests {
    use picogpt_core::format::QuantScheme;
    use picogpt_core::{MatrixFormat, ModelConfig};

    use super::*;

    fn gpt2() -> Layout {
        Layout::new(
            ModelConfig::GPT2_124M,
            QuantScheme::uniform(MatrixFormat::Int8 { block: 32 }),
            0,
        )
        .unwrap()
    }

    #[test]
    fn a_pass_reads_the_weights_once_and_two_rows() {
        let layout = gpt2();
        let bytes = pass_bytes(&layout);
        // GPT-2 124M int8 (blocks of 32 with f16 scales): 132.1 MB per token.
        assert!((131_000_000..133_500_000).contains(&bytes), "{bytes}");
    }

    #[test]
    fn the_bus_time_is_the_wire_floor_plus_framing_and_commands() {
        let layout = gpt2();
        let a = Assumptions {
            access_latency: 0.0,
            command_bytes: 0,
            gap_bytes: 0,
            ..Default::default()
        };
        let t = token(&layout, &PICO2, Activations::Int8, 0, 0, &a);
        // Every block carries 3 bytes more (token, CRC16), and the pass reads one window past its end.
        let blocks = (t.pack_bytes + WINDOW).div_ceil(BLOCK) + 4;
        assert_eq!(t.bus_bytes, blocks * 515);
        assert!((t.io_seconds - t.bus_bytes as f64 * 8.0 / 25e6).abs() < 1e-9);
        let slow = token(&layout, &PICO2, Activations::Int8, 100, 0, &Assumptions::default());
        assert!(slow.io_seconds > t.io_seconds + 100.0 * 300e-6);
    }

    #[test]
    fn the_ram_goes_to_the_prompt_batch_first() {
        let layout = gpt2();
        // Ten prompt positions fit the Pico 2's arena in one pass; the KV cache takes the rest.
        let s = split(&layout, &PICO2, Activations::F32, 10, 8);
        assert_eq!((s.batch, s.passes), (10, 1), "{s:?}");
        assert_eq!(s.kv_in_ram + s.spilled, 17);
        // A board with a tenth of the RAM takes more passes.
        let small = Board { arena: 120_000, ..PICO2 };
        assert!(split(&layout, &small, Activations::F32, 10, 8).passes > 1);
    }
}
