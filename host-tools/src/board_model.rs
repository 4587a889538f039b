//! A timing model of the SD boards (`host-tools bench --board pico2|esp32c6`): what one token
//! costs on the card's bus and on the CPU, per bus, activation path and core count, what the
//! default request takes, and what speculation (several tokens per weight pass) gives — from
//! a pack's layout, the boards' RAM, instruction counts measured under emulation and the
//! PIO SDIO programs' emulated cycle counts. An estimate: no board has run it.
//!
//! The read paths it models (`firmware/common`, `firmware/pico2`):
//! - SPI: one CMD18 left open while a pass streams through the file, 16 KiB windows clocked
//!   in by DMA while the CPU computes on the previous one (read-ahead), so a pass takes the
//!   longer of its bus time and its CPU time; CMD12 and a new CMD18 for each jump (the
//!   token's `wte` and `wpe` rows, the token texts printed after the pass, the KV records
//!   spilled to `KV.BIN`); the CPU deframes the blocks and checks their CRC16.
//! - PIO SDIO (Pico 2, feature `sdio`): one CMD18 … CMD12 per 16 KiB window, the blocks moved
//!   by DMA into two bounce buffers while the CPU checks the other's CRCs; the firmware does
//!   not compute while a window is read, so a pass takes its bus time plus its CPU time (the
//!   overlapped figure is what read-ahead would give).

use picogpt_core::format::{TensorId, TensorKind};
use picogpt_core::kv::bytes_per_position;
use picogpt_core::layout::Layout;
use picogpt_core::{Activations, KvFormat, Workspace, WorkspaceSpec};

use crate::bench::{InstructionCount, compute_seconds};

/// Bytes per SD block.
const BLOCK: u64 = 512;
/// Bytes of the pack window: one DMA run, one stretch of the open multi-block read.
const WINDOW: u64 = 16 * 1024;
/// Bytes per core read (`CHUNK_BYTES` of the boards): one window.
pub const CHUNK: usize = WINDOW as usize;
/// Prompt tokens of the default request.
pub const PROMPT: usize = 10;
/// Tokens the default request generates (`-n 8`).
pub const GENERATED: usize = 8;

/// What one activation path costs on a board's CPU: guest instructions measured under
/// emulation (QEMU `-icount shift=0`), GPT-2 124M shape, synthetic weights, int8 pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathCost {
    /// The path.
    pub activations: Activations,
    /// One generated token's pass (the second token of a one-token prompt), and how much of
    /// it runs in the matrices' row jobs (what a second core would share).
    pub token: InstructionCount,
    /// The default request's prompt pass: its 10 positions at batch 10 (the LM head for the
    /// last one only).
    pub prompt: u64,
}

impl PathCost {
    /// `total` instructions with the token's row-job share.
    fn with_token_share(&self, total: f64) -> InstructionCount {
        let share = self.token.in_row_jobs as f64 / self.token.total.max(1) as f64;
        InstructionCount { total: total as u64, in_row_jobs: (total * share) as u64 }
    }

    /// The prompt pass's count, its row-job share taken as the token's.
    fn prompt_count(&self) -> InstructionCount {
        self.with_token_share(self.prompt as f64)
    }

    /// A pass computing `positions` positions, each with its logits (a speculation pass):
    /// the token's count, and per further position the prompt pass's marginal one
    /// (`(prompt - token) / 9`, the batch sharing the weights' decoding) plus the LM head's
    /// share `lm_head` of a token (the prompt's first nine positions skip the LM head).
    pub fn pass_count(&self, positions: f64, lm_head: f64) -> InstructionCount {
        let token = self.token.total as f64;
        let marginal = self.prompt.saturating_sub(self.token.total) as f64 / 9.0 + lm_head * token;
        self.with_token_share(token + (positions - 1.0).max(0.0) * marginal)
    }
}

/// The LM head's share of a token's multiply-adds (`wte` times the last position).
pub fn lm_head_share(layout: &Layout) -> f64 {
    let cfg = layout.config();
    let head = u64::from(cfg.vocab_size) * u64::from(cfg.n_embd);
    head as f64 / cfg.weight_macs_per_token().max(1) as f64
}

/// qemu-m33 (`mps2-an505`, Cortex-M33), 16 KiB reads, the pack `host-tools synth --out M
/// --seed 1 && host-tools pack M -o P --quant int8` makes. Tokens:
/// `sh firmware/qemu-m33/qemu-run.sh ELF P --tokens 36235 -n 2 --kv int8 --activations A
/// --no-verify --icount` ("instructions per token"); row jobs: `python3
/// scripts/m33-profile.py P --activations A` ("in row jobs"); prompt: the same runner with
/// the 10 tokens of "Alan Turing theorized that computers would one day become", `-n 8
/// --kv int8 --kv-file kv.bin` ("prompt pass: … (batch 10)"). Measured on `main` of
/// 2026-12-02, when the boards' reads grew from 4 KiB to 16 KiB.
pub const M33: [PathCost; 3] = [
    PathCost {
        activations: Activations::F32,
        token: InstructionCount { total: 288_330_950, in_row_jobs: 275_544_519 },
        prompt: 2_011_583_750,
    },
    PathCost {
        activations: Activations::Int16,
        token: InstructionCount { total: 194_629_150, in_row_jobs: 181_842_790 },
        prompt: 1_335_209_350,
    },
    PathCost {
        activations: Activations::Int8,
        token: InstructionCount { total: 194_627_050, in_row_jobs: 181_841_077 },
        prompt: 1_335_188_850,
    },
];

/// qemu-rv32 (`sifive_u`, RV32IMAC, soft float, the pack on an emulated SD card over SPI,
/// the SPI FIFO loops left out: DMA on the C6), the same pack copied to a 256 MiB FAT32 card
/// image as `MODEL.PGP`. Tokens: `sh firmware/qemu-rv32/qemu-run.sh ELF --sd CARD --tokens
/// 36235 -n 2 --kv int8 --activations A --no-verify --icount`; prompt: the same with the 10
/// tokens of "Alan Turing theorized that computers would one day become" ("prompt pass: …
/// (batch 10)"; the RAM holds 8 positions beside the batch, so the pass writes two to
/// `KV.BIN` on the card). One core: no row-job split.
/// Measured on `main` of 2026-12-02, when the boards' reads grew from 4 KiB to 16 KiB.
pub const RV32: [PathCost; 3] = [
    PathCost {
        activations: Activations::F32,
        token: InstructionCount { total: 5_554_055_252, in_row_jobs: 0 },
        prompt: 30_190_826_236,
    },
    PathCost {
        activations: Activations::Int16,
        token: InstructionCount { total: 3_748_246_906, in_row_jobs: 0 },
        prompt: 17_261_984_731,
    },
    PathCost {
        activations: Activations::Int8,
        token: InstructionCount { total: 3_747_875_739, in_row_jobs: 0 },
        prompt: 17_260_113_934,
    },
];

/// A card bus.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bus {
    /// SD in SPI mode at `hz`: reads overlap computing (DMA read-ahead).
    Spi {
        /// Clock while reading, Hz.
        hz: f64,
    },
    /// The Pico 2's PIO SDIO, 4 bits a clock: reads and computing take turns. Cycles from
    /// the PIO programs emulated cycle by cycle against a pin-level card
    /// (`cd firmware/sdio/emulation && python model.py`).
    Sdio {
        /// SD clock, MHz.
        mhz: u32,
        /// System-clock cycles per further 512-byte block of a multi-block read.
        cycles_per_block: f64,
        /// System-clock cycles of a read besides its blocks (CMD18, response, CMD12, busy).
        cycles_per_read: f64,
    },
}

impl Bus {
    /// Default-speed SDIO: 6,302 cycles a block (12.19 MB/s streaming), 1,362 a read.
    pub const SDIO_25: Self =
        Self::Sdio { mhz: 25, cycles_per_block: 6302.0, cycles_per_read: 1362.0 };
    /// High-speed SDIO: 3,151 cycles a block (24.37 MB/s streaming), 681 a read.
    pub const SDIO_50: Self =
        Self::Sdio { mhz: 50, cycles_per_block: 3151.0, cycles_per_read: 681.0 };

    /// Its name in the table.
    pub fn name(&self) -> String {
        match self {
            Self::Spi { hz } => format!("SPI {:.0} MHz", hz / 1e6),
            Self::Sdio { mhz, .. } => format!("SDIO {mhz} MHz"),
        }
    }

    /// Whether the firmware computes while this bus reads.
    pub fn overlapped(&self) -> bool {
        matches!(self, Self::Spi { .. })
    }
}

/// The board being modelled.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// Its name on the command line.
    pub name: &'static str,
    /// CPU (and PIO system) clock, Hz.
    pub cpu_hz: f64,
    /// Cores that can share the row jobs.
    pub cores: usize,
    /// Bytes of RAM each request splits between workspace and KV cache (the firmware's
    /// arena, from its link map).
    pub arena: usize,
    /// The activation path its console uses by default.
    pub activations: Activations,
    /// Instructions per path.
    pub paths: &'static [PathCost; 3],
    /// Where the counts come from.
    pub emulator: &'static str,
    /// The buses it can read its card over.
    pub buses: &'static [Bus],
}

/// The Pico 2: two Cortex-M33 at 150 MHz, a 444,912-byte arena (`firmware/pico2`'s link
/// map), SPI0 at 25 MHz or PIO SDIO at 25 or 50 MHz.
pub const PICO2: Board = Board {
    name: "pico2",
    cpu_hz: 150e6,
    cores: 2,
    arena: 444_912,
    activations: Activations::Int16,
    paths: &M33,
    emulator: "qemu-m33",
    buses: &[Bus::Spi { hz: 25e6 }, Bus::SDIO_25, Bus::SDIO_50],
};

/// The ESP32-C6: one RISC-V core at 160 MHz without an FPU, a 368,640-byte arena
/// (`firmware/esp32c6`'s static), SPI2 at 20 MHz (80 MHz APB / 4; the next divider would
/// pass SD's 25 MHz limit in SPI mode).
pub const ESP32C6: Board = Board {
    name: "esp32c6",
    cpu_hz: 160e6,
    cores: 1,
    arena: 368_640,
    activations: Activations::Int16,
    paths: &RV32,
    emulator: "qemu-rv32",
    buses: &[Bus::Spi { hz: 20e6 }],
};

/// Instructions per token of a pack with q4m–q6m matrices over the int8 pack's, integer
/// activation paths: qemu-m33 `--icount`, the `qemu_m33` test's 8 × 256 model packed compact
/// (63,485,350 with int16 activations: unpacking in Rust, the sums in the int8 kernels'
/// `SMLAD` block) against int8 (13,417,200); measured at `m33-tight` commit `0cc2e60`
/// (`cargo test --release -p picogpt-tests --test qemu_m33 the_emulated_m33_prints --
/// --nocapture`).
pub const AFFINE_INT_RATIO: f64 = 63_485_350.0 / 13_417_200.0;
/// The same on the f32 path, plain kernels (141,346,100 against 18,469,400).
pub const AFFINE_F32_RATIO: f64 = 141_346_100.0 / 18_469_400.0;

/// Whether `layout`'s pack has q4m–q6m matrices (whose kernels cost more than int8's).
pub fn has_affine(layout: &Layout) -> bool {
    (0..layout.tensor_count()).any(|i| layout.format(layout.id_at(i)).dtype.affine_bits().is_some())
}

/// `path`'s measured cost (the int8 pack's) for `layout`'s pack: scaled by
/// [`AFFINE_INT_RATIO`] or [`AFFINE_F32_RATIO`] when the pack has q4m–q6m matrices.
pub fn path_cost(layout: &Layout, path: &PathCost) -> PathCost {
    if !has_affine(layout) {
        return *path;
    }
    let ratio = match path.activations {
        Activations::Int8 | Activations::Int16 => AFFINE_INT_RATIO,
        Activations::F32 => AFFINE_F32_RATIO,
    };
    let scale = |n: u64| (n as f64 * ratio) as u64;
    PathCost {
        activations: path.activations,
        token: InstructionCount {
            total: scale(path.token.total),
            in_row_jobs: scale(path.token.in_row_jobs),
        },
        prompt: scale(path.prompt),
    }
}

/// The model's assumptions about the card and the CPU.
#[derive(Clone, Copy, Debug)]
pub struct Assumptions {
    /// Seconds from a read command to its first block (the card's access latency).
    pub access_latency: f64,
    /// Bytes clocked per SPI command besides data: the command, NCR, R1, CMD12's and busy.
    pub command_bytes: u64,
    /// Idle bytes the card sends before each block of an SPI multi-block read.
    pub gap_bytes: u64,
    /// CPU instructions per byte to take SPI blocks off the wire and check their CRC16.
    pub crc_instructions_per_byte: f64,
    /// CPU instructions per byte to check an SDIO block's four CRC16s (7 a word) and copy it
    /// out of its bounce buffer, while DMA fills the other.
    pub sdio_instructions_per_byte: f64,
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
            sdio_instructions_per_byte: 2.0,
            cycles_per_instruction: 1.0,
        }
    }
}

/// The bus side of one pass over the weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transfer {
    /// Bytes core reads from the pack.
    pub pack_bytes: u64,
    /// 512-byte blocks read (and KV blocks written).
    pub blocks: u64,
    /// Read commands (SPI: CMD18 and CMD12 each count; SDIO: one per read).
    pub commands: u64,
    /// Seconds the bus is busy, card latency included.
    pub io_seconds: f64,
    /// The card latency's part of them.
    pub latency_seconds: f64,
    /// CPU seconds the bus costs on top of the forward pass, on one core (SPI's deframing
    /// and CRC16; SDIO's checks run inside the bus time).
    pub cpu_seconds: f64,
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

/// One pass's transfer on `bus`: `commands` SPI commands per pass for its jumps (measured on
/// qemu-rv32's emulated card: its pass's reads and their stops, and the token texts of the
/// lines it prints) plus `spill` KV positions read back from `KV.BIN` in every layer and one
/// written.
pub fn transfer(
    layout: &Layout,
    board: &Board,
    bus: &Bus,
    commands: u64,
    spill: usize,
    a: &Assumptions,
) -> Transfer {
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
    let blocks = pass_blocks + kv_blocks;
    match *bus {
        Bus::Spi { hz } => {
            let commands = commands + kv_commands;
            let bus_bytes = blocks * (BLOCK + 3 + a.gap_bytes) + commands * a.command_bytes;
            let latency_seconds = commands as f64 * a.access_latency;
            let instructions = bus_bytes as f64 * a.crc_instructions_per_byte;
            Transfer {
                pack_bytes,
                blocks,
                commands,
                io_seconds: bus_bytes as f64 * 8.0 / hz + latency_seconds,
                latency_seconds,
                cpu_seconds: instructions * a.cycles_per_instruction / board.cpu_hz,
            }
        }
        Bus::Sdio { cycles_per_block, cycles_per_read, .. } => {
            // A read per window, and one per jump (half the SPI commands: no CMD12 counted).
            let reads = pass_blocks.div_ceil(WINDOW / BLOCK) + (commands + kv_commands) / 2;
            let cycles = blocks as f64 * cycles_per_block + reads as f64 * cycles_per_read;
            let latency_seconds = reads as f64 * a.access_latency;
            let checks = (blocks * BLOCK) as f64 * a.sdio_instructions_per_byte;
            let bus_seconds = (cycles / board.cpu_hz).max(checks / board.cpu_hz);
            Transfer {
                pack_bytes,
                blocks,
                commands: reads,
                io_seconds: bus_seconds + latency_seconds,
                latency_seconds,
                cpu_seconds: 0.0,
            }
        }
    }
}

/// Seconds of a pass that reads `transfer` and runs `count` on `cores` cores: the longer of
/// the two where the bus reads ahead (`overlapped`), the sum where reading and computing take
/// turns.
pub fn pass_seconds(
    transfer: &Transfer,
    board: &Board,
    count: InstructionCount,
    cores: usize,
    overlapped: bool,
    a: &Assumptions,
) -> f64 {
    let compute = compute_seconds(count, cores, board.cpu_hz / a.cycles_per_instruction);
    let cpu = compute + transfer.cpu_seconds;
    if overlapped { transfer.io_seconds.max(cpu) } else { transfer.io_seconds + cpu }
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

/// Seconds of the default request (10-token prompt, `-n 8`): the prompt's passes, each
/// reading the weights once and computing its share of the measured prompt pass, then the
/// seven further tokens, each reading the KV positions `split` spills.
#[allow(clippy::too_many_arguments)]
pub fn request_seconds(
    layout: &Layout,
    board: &Board,
    bus: &Bus,
    path: &PathCost,
    cores: usize,
    commands: u64,
    overlapped: bool,
    a: &Assumptions,
) -> (Split, f64) {
    let s = split(layout, board, path.activations, PROMPT, GENERATED);
    let hz = board.cpu_hz / a.cycles_per_instruction;
    let prompt_cpu = compute_seconds(path.prompt_count(), cores, hz) / s.passes as f64;
    let read = transfer(layout, board, bus, commands, 0, a);
    let cpu = prompt_cpu + read.cpu_seconds;
    let prompt_pass = if overlapped { read.io_seconds.max(cpu) } else { read.io_seconds + cpu };
    let spilling = transfer(layout, board, bus, commands, s.spilled, a);
    let token = pass_seconds(&spilling, board, path.token, cores, overlapped, a);
    (s, s.passes as f64 * prompt_pass + (GENERATED - 1) as f64 * token)
}

/// Weight passes of one `host-tools run --speculate 4` (prompt lookup: drafts verified in
/// the pass that computes the next token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speculation {
    /// The run, for the table.
    pub what: &'static str,
    /// Tokens generated (`-n`).
    pub tokens: u64,
    /// Weight passes, the prompt's included (`weight_passes` of `--json`).
    pub passes: u64,
    /// Passes that verified drafts (`drafts`).
    pub drafting_passes: u64,
    /// Draft tokens verified (`drafted_tokens`), accepted or not: each is a position computed.
    pub drafted: u64,
}

impl Speculation {
    /// Seconds per generated token after the prompt's pass, from the seconds of a pass
    /// computing `positions` positions: the plain passes at one position, the drafting passes
    /// at one plus their mean drafts.
    pub fn seconds_per_token(&self, pass: impl Fn(f64) -> f64) -> f64 {
        let drafting = self.drafting_passes.min(self.passes.saturating_sub(1));
        let plain = self.passes.saturating_sub(1) - drafting;
        let mean = if drafting == 0 { 0.0 } else { self.drafted as f64 / drafting as f64 };
        let seconds = plain as f64 * pass(1.0) + drafting as f64 * pass(1.0 + mean);
        seconds / self.tokens.saturating_sub(1).max(1) as f64
    }
}

/// `host-tools run weights-pack "Alan Turing theorized that computers would one day become"
/// -n 64 --speculate 4 --json OUT` on two packs. The learned model repeats itself
/// (" in the earth. And the earth, and the earth, …"), so the prompt's lookup finds drafts;
/// the synthetic 124M's text does not repeat, so most drafts fail (each still costs a
/// position's compute).
pub const SPECULATION: [Speculation; 2] = [
    Speculation {
        what: "looping text (kjv-4x128 int8, learned)",
        tokens: 64,
        passes: 20,
        drafting_passes: 12,
        drafted: 47,
    },
    Speculation {
        what: "non-looping text (124M shape int8, synthetic)",
        tokens: 64,
        passes: 57,
        drafting_passes: 12,
        drafted: 46,
    },
];

/// The tables `bench --board` prints for `layout` on `board`, with `commands` SPI commands
/// per pass, and the assumptions they rest on.
pub fn report(layout: &Layout, board: &Board, commands: u64, a: &Assumptions) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let cfg = layout.config();
    let macs = cfg.weight_macs_per_token() as f64;
    let hz = board.cpu_hz / a.cycles_per_instruction;
    let lm_head = lm_head_share(layout);
    let _ = writeln!(
        out,
        "{}: CPU {:.0} MHz x {} core(s), arena {} bytes; {} layers x {}, {}, {} pack bytes per pass \
         (estimates: emulator instruction counts and bus models, not hardware)",
        board.name,
        board.cpu_hz / 1e6,
        board.cores,
        board.arena,
        cfg.n_layer,
        cfg.n_embd,
        layout.quant().matrices,
        pass_bytes(layout)
    );
    let _ = writeln!(
        out,
        "\n| activations | instructions/token ({}) | per multiply-add | in row jobs | prompt pass (10 positions) | compute s/token, 1 core |{}",
        board.emulator,
        if board.cores > 1 { " compute s/token, 2 cores |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|{}",
        if board.cores > 1 { "---:|" } else { "" }
    );
    let paths: Vec<PathCost> = board.paths.iter().map(|p| path_cost(layout, p)).collect();
    for path in &paths {
        let default = if path.activations == board.activations { " (console default)" } else { "" };
        let jobs = if path.token.in_row_jobs == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * path.token.in_row_jobs as f64 / path.token.total as f64)
        };
        let mut line = format!(
            "| {}{default} | {} | {:.2} | {jobs} | {} | {:.2} |",
            path.activations.name(),
            path.token.total,
            path.token.total as f64 / macs,
            path.prompt,
            compute_seconds(path.token, 1, hz)
        );
        if board.cores > 1 {
            let _ = write!(line, " {:.2} |", compute_seconds(path.token, board.cores, hz));
        }
        let _ = writeln!(out, "{line}");
    }
    let [looping, plain] = &SPECULATION;
    let _ = writeln!(
        out,
        "\n| bus | activations | cores | I/O s/token (card latency) | CPU s/token | s/token, read then compute | s/token, overlapped | default request (10-token prompt, -n 8) | speculate 4, looping text: s/token | speculate 4, non-looping: s/token |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|---:|---:|");
    for bus in board.buses {
        let mode = if bus.overlapped() { "overlapped" } else { "read then compute" };
        let t = transfer(layout, board, bus, commands, 0, a);
        for path in &paths {
            for cores in 1..=board.cores {
                let cpu = compute_seconds(path.token, cores, hz) + t.cpu_seconds;
                let serial = pass_seconds(&t, board, path.token, cores, false, a);
                let overlapped = pass_seconds(&t, board, path.token, cores, true, a);
                let (s, request) =
                    request_seconds(layout, board, bus, path, cores, commands, bus.overlapped(), a);
                let spec = |run: &Speculation| {
                    run.seconds_per_token(|positions| {
                        let count = path.pass_count(positions, lm_head);
                        pass_seconds(&t, board, count, cores, bus.overlapped(), a)
                    })
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {cores} | {:.1} ({:.2}) | {:.2} | {:.1} | {:.1} | {:.1} min ({mode}; batch {}, {} pass(es), {} + {} KV positions in RAM + KV.BIN) | {:.1} | {:.1} |",
                    bus.name(),
                    path.activations.name(),
                    t.io_seconds,
                    t.latency_seconds,
                    cpu,
                    serial,
                    overlapped,
                    request / 60.0,
                    s.batch,
                    s.passes,
                    s.kv_in_ram,
                    s.spilled,
                    spec(looping),
                    spec(plain),
                );
            }
        }
    }
    for run in &SPECULATION {
        let _ = writeln!(
            out,
            "\nspeculate 4, {}: {} weight passes for {} tokens, {} drafts verified in {} passes",
            run.what, run.passes, run.tokens, run.drafted, run.drafting_passes
        );
    }
    if has_affine(layout) {
        let _ = writeln!(
            out,
            "\ninstructions: the int8 pack's measured counts x {AFFINE_INT_RATIO:.2} (integer paths) \
             and x {AFFINE_F32_RATIO:.2} (f32), the q4m-q6m kernels' cost on qemu-m33's 8 x 256 \
             model (AFFINE_INT_RATIO, AFFINE_F32_RATIO)"
        );
    }
    let _ = writeln!(
        out,
        "\nassumptions: card access latency {:.0} us per read command; SPI: {} commands per pass, \
         {} bytes clocked per command, {} idle bytes before each block, {} CPU instructions per \
         byte to deframe and check CRC16, reads overlap computation (16 KiB DMA windows); SDIO: \
         one read per 16 KiB window, PIO cycles from firmware/sdio/emulation/model.py, {} CPU \
         instructions per byte (CRC16 and copy, during the transfer), reads then computing (as \
         the firmware does today); {} cycle(s) per emulated instruction; the prompt pass's \
         instructions measured at batch 10; a speculation pass of k positions costs a token plus \
         k - 1 times the prompt's marginal position and the LM head ({:.0}% of a token's \
         multiply-adds)",
        a.access_latency * 1e6,
        commands,
        a.command_bytes,
        a.gap_bytes,
        a.crc_instructions_per_byte,
        a.sdio_instructions_per_byte,
        a.cycles_per_instruction,
        100.0 * lm_head
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

    fn exact() -> Assumptions {
        Assumptions { access_latency: 0.0, command_bytes: 0, gap_bytes: 0, ..Default::default() }
    }

    #[test]
    fn a_pass_reads_the_weights_once_and_two_rows() {
        let layout = gpt2();
        let bytes = pass_bytes(&layout);
        // GPT-2 124M int8 (blocks of 32 with f16 scales): 132.1 MB per token.
        assert!((131_000_000..133_500_000).contains(&bytes), "{bytes}");
    }

    #[test]
    fn the_spi_bus_time_is_the_wire_floor_plus_framing_and_commands() {
        let layout = gpt2();
        let spi = Bus::Spi { hz: 25e6 };
        let t = transfer(&layout, &PICO2, &spi, 0, 0, &exact());
        // Every block carries 3 bytes more (token, CRC16), and the pass reads one window past its end.
        let blocks = (t.pack_bytes + WINDOW).div_ceil(BLOCK) + 4;
        assert_eq!(t.blocks, blocks);
        assert!((t.io_seconds - (blocks * 515) as f64 * 8.0 / 25e6).abs() < 1e-9);
        assert!((t.cpu_seconds - (blocks * 515) as f64 * 4.5 / 150e6).abs() < 1e-9);
        let slow = transfer(&layout, &PICO2, &spi, 100, 0, &Assumptions::default());
        assert!(slow.io_seconds > t.io_seconds + 100.0 * 300e-6);
    }

    #[test]
    fn the_sdio_bus_time_is_its_cycles_and_a_latency_per_window() {
        let layout = gpt2();
        let a = Assumptions { access_latency: 250e-6, ..Default::default() };
        let t = transfer(&layout, &PICO2, &Bus::SDIO_50, 22, 0, &a);
        // By hand: 32 blocks a window, 11 reads for the jumps.
        let reads = t.blocks.div_ceil(32) + 11;
        let seconds = (t.blocks as f64 * 3151.0 + reads as f64 * 681.0) / 150e6;
        assert_eq!(t.commands, reads);
        assert!((t.io_seconds - seconds - reads as f64 * 250e-6).abs() < 1e-9, "{t:?}");
        // 132.6 MB at 24.37 MB/s is about 5.4 s before the card's latency.
        assert!((5.3..5.6).contains(&(t.io_seconds - t.latency_seconds)), "{t:?}");
        assert_eq!(t.cpu_seconds, 0.0);
    }

    #[test]
    fn a_pass_overlaps_or_adds_its_reading_and_computing() {
        let transfer = Transfer {
            pack_bytes: 0,
            blocks: 0,
            commands: 0,
            io_seconds: 5.0,
            latency_seconds: 0.0,
            cpu_seconds: 0.5,
        };
        // 300 M instructions, 240 M in row jobs, at 150 MHz: 2 s on one core, 1.2 s on two.
        let count = InstructionCount { total: 300_000_000, in_row_jobs: 240_000_000 };
        let a = Assumptions::default();
        let pass = |count, cores, overlapped| {
            pass_seconds(&transfer, &PICO2, count, cores, overlapped, &a)
        };
        assert!((pass(count, 1, false) - 7.5).abs() < 1e-9);
        assert!((pass(count, 2, false) - 6.7).abs() < 1e-9);
        assert!((pass(count, 1, true) - 5.0).abs() < 1e-9);
        // Three times the work on two cores: 3 × 1.2 + 0.5 = 4.1 s, under the bus's 5 s; five
        // times: 6.5 s, past it.
        let times =
            |k: u64| InstructionCount { total: k * 300_000_000, in_row_jobs: k * 240_000_000 };
        assert!((pass(times(3), 2, true) - 5.0).abs() < 1e-9);
        assert!((pass(times(5), 2, true) - 6.5).abs() < 1e-9);
    }

    #[test]
    fn a_speculation_pass_adds_marginal_positions_with_their_logits() {
        // A token of 100 M instructions (80 M in row jobs), a 10-position prompt pass of 280 M:
        // 20 M per further position, plus the LM head's 30% of a token, 30 M, for its logits.
        let path = PathCost {
            activations: Activations::Int16,
            token: InstructionCount { total: 100_000_000, in_row_jobs: 80_000_000 },
            prompt: 280_000_000,
        };
        assert_eq!(path.pass_count(1.0, 0.3), path.token);
        let three = path.pass_count(3.0, 0.3);
        assert_eq!(three.total, 200_000_000);
        assert_eq!(three.in_row_jobs, 160_000_000);
        // GPT-2 124M: the LM head is 38.6 M of 123.5 M multiply-adds.
        let share = lm_head_share(&gpt2());
        assert!((share - 38_597_376.0 / 123_532_032.0).abs() < 1e-12, "{share}");
    }

    #[test]
    fn speculation_spreads_passes_over_the_tokens_they_yield() {
        // 10 tokens in 4 passes: the prompt's, one plain pass, two passes verifying 6 drafts.
        let run = Speculation { what: "", tokens: 10, passes: 4, drafting_passes: 2, drafted: 6 };
        // A pass costs 1 s plus 0.5 s per position: 1.5 s plain, 1 + 0.5 × 4 = 3 s drafting.
        let seconds = run.seconds_per_token(|positions| 1.0 + 0.5 * positions);
        assert!((seconds - (1.5 + 2.0 * 3.0) / 9.0).abs() < 1e-12, "{seconds}");
        // Without drafts every token is a plain pass.
        let plain =
            Speculation { what: "", tokens: 10, passes: 10, drafting_passes: 0, drafted: 0 };
        assert!((plain.seconds_per_token(|p| 1.0 + 0.5 * p) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn the_request_is_its_prompt_passes_and_seven_tokens() {
        let layout = gpt2();
        let a = exact();
        let spi = Bus::Spi { hz: 25e6 };
        let path = &M33[1];
        let (s, seconds) = request_seconds(&layout, &PICO2, &spi, path, 1, 0, true, &a);
        assert_eq!((s.batch, s.passes), (10, 1), "{s:?}");
        // Bus bound over SPI: one pass for the prompt (1.54 G instructions take 10.3 s, under
        // the bus's 43 s), then seven tokens reading the spilled KV records too.
        let read = transfer(&layout, &PICO2, &spi, 0, 0, &a);
        let spilled = transfer(&layout, &PICO2, &spi, 0, s.spilled, &a);
        let expected = read.io_seconds + 7.0 * spilled.io_seconds;
        assert!((seconds - expected).abs() < 1e-9, "{seconds} {expected}");
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
