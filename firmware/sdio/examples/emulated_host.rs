//! The protocol ([`Card`]) driving an emulated PIO: the state machine's every start, push and
//! pop is a line on stdout, answered on stdin by `emulation/sdio_emu.py`, which runs the
//! exported program words in the PyPI `rp2040-pio-emulator` against a pin-level card. The
//! results come back on the same pipe (`result ...` lines).
//!
//! Arguments are steps, run in order: `init`, `read START COUNT`, `write START COUNT SEED`,
//! led by `timeouts US` to set every time limit (a card that stops answering, emulated).

use std::io::{BufRead, BufReader, Stdin, Stdout, Write};

use picogpt_sdio::programs::{Mode, Speed};
use picogpt_sdio::sm::StateMachine;
use picogpt_sdio::{Card, Timeouts};

/// A state machine whose every operation is a request to the emulator on the other end of
/// the pipe.
struct PipeStateMachine {
    out: Stdout,
    replies: BufReader<Stdin>,
}

impl PipeStateMachine {
    fn ask(&mut self, request: &str) -> String {
        let mut out = self.out.lock();
        writeln!(out, "{request}").expect("the emulator went away");
        out.flush().expect("the emulator went away");
        let mut reply = String::new();
        self.replies.read_line(&mut reply).expect("the emulator went away");
        reply.trim().to_string()
    }

    fn tell(&mut self, line: &str) {
        let reply = self.ask(line);
        assert_eq!(reply, "ok", "the emulator did not take {line:?}");
    }
}

impl StateMachine for PipeStateMachine {
    fn start(&mut self, mode: Mode, speed: Speed) {
        self.tell(&format!("start {} {}", mode.name(), speed.divider()));
    }

    fn push(&mut self, word: u32, timeout_us: u32) -> bool {
        self.ask(&format!("push {word:#010x} {timeout_us}")) == "ok"
    }

    fn pop(&mut self, timeout_us: u32) -> Option<u32> {
        let reply = self.ask(&format!("pop {timeout_us}"));
        let hex = reply.strip_prefix("word 0x")?;
        u32::from_str_radix(hex, 16).ok()
    }

    fn wait_parked(&mut self, timeout_us: u32) -> bool {
        self.ask(&format!("park {timeout_us}")) == "ok"
    }

    fn micros(&mut self) -> u64 {
        let reply = self.ask("micros");
        reply.strip_prefix("micros ").and_then(|n| n.parse().ok()).expect("micros reply")
    }
}

/// The bytes `write START COUNT SEED` writes to block `block`.
fn pattern(block: u32, seed: u32) -> [u8; 512] {
    core::array::from_fn(|i| (block.wrapping_mul(7) ^ (i as u32).wrapping_mul(13) ^ seed) as u8)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn number(args: &mut impl Iterator<Item = String>, what: &str) -> u32 {
    args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{what}: expected a number"))
}

fn main() {
    let mut sm =
        PipeStateMachine { out: std::io::stdout(), replies: BufReader::new(std::io::stdin()) };
    sm.tell("hello");
    let mut args = std::env::args().skip(1).peekable();
    let timeouts = if args.peek().is_some_and(|a| a == "timeouts") {
        args.next();
        let us = number(&mut args, "timeouts");
        Timeouts { response_us: us, data_us: us, busy_us: us, power_up_us: us.saturating_mul(20) }
    } else {
        Timeouts::default()
    };
    let mut card = Card::with_timeouts(sm, timeouts);
    while let Some(step) = args.next() {
        let line = match step.as_str() {
            "init" => match card.init() {
                Ok(info) => format!(
                    "result init blocks={} high_capacity={} speed={:?} rca={:#06x}",
                    info.blocks, info.high_capacity, info.speed, info.rca
                ),
                Err(e) => format!("result error {e}"),
            },
            "read" => {
                let start = number(&mut args, "read START");
                let count = number(&mut args, "read COUNT");
                let mut blocks = vec![[0u8; 512]; count as usize];
                card.state_machine().tell("mark begin");
                let read = card.read(start, &mut blocks);
                card.state_machine().tell("mark end");
                match read {
                    Ok(()) => format!("result data {}", hex(blocks.as_flattened())),
                    Err(e) => format!("result error {e}"),
                }
            }
            "write" => {
                let start = number(&mut args, "write START");
                let count = number(&mut args, "write COUNT");
                let seed = number(&mut args, "write SEED");
                let blocks: Vec<[u8; 512]> =
                    (start..start + count).map(|b| pattern(b, seed)).collect();
                match card.write(start, &blocks) {
                    Ok(()) => "result written".to_string(),
                    Err(e) => format!("result error {e}"),
                }
            }
            other => panic!("unknown step {other:?}"),
        };
        card.state_machine().tell(&line);
    }
    card.state_machine().tell("bye");
}
