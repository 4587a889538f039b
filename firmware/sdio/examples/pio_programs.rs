//! Prints, as JSON, the PIO instruction memory exactly as the firmware loads it (all four
//! programs at their origins, jump targets relocated), each program's wrap and side-set, each
//! mode's pins (as offsets from CLK's GPIO), the shift settings and the clock dividers: what
//! the emulation tests (`emulation/`) run, so no program word is typed twice.
//!
//! `cargo run --example pio-programs > programs.json`

use picogpt_sdio::programs::{
    LINES, Line, MEMORY_SLOTS, Mode, PIO_CYCLES_PER_CLOCK, ProgramId, SYS_CLOCK_HZ, Speed,
    memory_image, shift,
};

fn main() {
    let memory = memory_image();
    let words: Vec<String> = memory.iter().map(|w| w.to_string()).collect();
    let programs: Vec<String> = ProgramId::ALL
        .iter()
        .map(|&id| {
            let program = id.placed();
            let origin = id.origin();
            format!(
                "\"{}\": {{\"origin\": {origin}, \"length\": {}, \"wrap_target\": {}, \
                 \"wrap_top\": {}, \"side_set_bits\": {}, \"side_set_optional\": {}}}",
                id.name(),
                program.code.len(),
                program.wrap.target + origin,
                program.wrap.source + origin,
                program.side_set.bits(),
                program.side_set.optional(),
            )
        })
        .collect();
    let modes: Vec<String> = Mode::ALL
        .iter()
        .map(|&mode| {
            let c = mode.config();
            format!(
                "\"{}\": {{\"program\": \"{}\", \"in_base\": {}, \"jmp_pin\": {}, \
                 \"out_base\": {}, \"out_count\": {}, \"set_base\": {}, \"set_count\": {}, \
                 \"side_set_base\": {}}}",
                mode.name(),
                c.program.name(),
                c.in_base as u8,
                c.jmp_pin as u8,
                c.out_base as u8,
                c.out_count,
                c.out_base as u8,
                c.out_count,
                Line::Clk as u8,
            )
        })
        .collect();
    let speeds: Vec<String> = [
        ("identification", Speed::Identification),
        ("default", Speed::Default),
        ("high", Speed::High),
    ]
    .iter()
    .map(|(name, speed)| format!("\"{name}\": {}", speed.divider()))
    .collect();
    println!("{{");
    println!("  \"sys_clock_hz\": {SYS_CLOCK_HZ},");
    println!("  \"pio_cycles_per_clock\": {PIO_CYCLES_PER_CLOCK},");
    println!(
        "  \"lines\": {{\"clk\": {}, \"cmd\": {}, \"dat0\": {}, \"count\": {LINES}}},",
        Line::Clk as u8,
        Line::Cmd as u8,
        Line::Dat0 as u8
    );
    println!("  \"memory_slots\": {MEMORY_SLOTS},");
    println!("  \"memory\": [{}],", words.join(", "));
    println!("  \"programs\": {{{}}},", programs.join(", "));
    println!("  \"modes\": {{{}}},", modes.join(", "));
    println!(
        "  \"shift\": {{\"in_left\": {}, \"autopush\": {}, \"threshold\": {}, \"out_left\": {}, \"autopull\": {}}},",
        shift::IN_LEFT,
        shift::AUTOPUSH,
        shift::THRESHOLD,
        shift::OUT_LEFT,
        shift::AUTOPULL
    );
    println!("  \"dividers\": {{{}}}", speeds.join(", "));
    println!("}}");
}
