//! The SD card in 4-bit SDIO mode (feature `sdio`): the programs of `picogpt-sdio` on PIO0's
//! state machine 0, data blocks moved from its RX FIFO by DMA channel 0 into two bounce
//! buffers in turn, each block's CRC16s checked (and its bytes copied out) while DMA fills
//! the other.
//!
//! ```text
//! Pico 2  GP10  -> card CLK
//!         GP11 <-> card CMD    (10-50 kΩ pull-up to 3V3)
//!         GP12 <-> card DAT0   (pull-up)
//!         GP13 <-> card DAT1   (pull-up)
//!         GP14 <-> card DAT2   (pull-up)
//!         GP15 <-> card DAT3   (pull-up)
//! ```

use core::future::Future;
use core::pin::Pin as FuturePin;
use core::task::{Context, Poll, Waker};

use embassy_rp::gpio::{Drive, Pull, SlewRate};
use embassy_rp::peripherals::{DMA_CH0, PIN_10, PIN_11, PIN_12, PIN_13, PIN_14, PIN_15, PIO0};
use embassy_rp::pio::{
    Common, Config, Direction, LoadedProgram, Pin, Pio, ShiftConfig, ShiftDirection, StateMachine,
};
use embassy_rp::{Peri, bind_interrupts, dma, pio};
use embassy_time::{Duration, Instant};
use picogpt_sdio::block_device::SdioCard;
use picogpt_sdio::programs::{Line, Mode, ProgramId, Speed, shift};
use picogpt_sdio::sm::{MAX_BLOCK_WORDS, ReceiveStop};
use picogpt_sdio::{Card as SdioProtocol, Error};

bind_interrupts!(struct Irqs {
    PIO0_IRQ_0 => pio::InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

/// The card behind PIO0, as the read path's block device.
pub type Card = SdioCard<PioStateMachine>;

/// The pins, in the bus's order (CLK, CMD, DAT0-3: six consecutive GPIOs).
pub struct Pins {
    /// GP10.
    pub clk: Peri<'static, PIN_10>,
    /// GP11.
    pub cmd: Peri<'static, PIN_11>,
    /// GP12.
    pub dat0: Peri<'static, PIN_12>,
    /// GP13.
    pub dat1: Peri<'static, PIN_13>,
    /// GP14.
    pub dat2: Peri<'static, PIN_14>,
    /// GP15.
    pub dat3: Peri<'static, PIN_15>,
}

/// `set pindirs, 0`, side-set 0.
const RELEASE_SET_PINS: u16 = 0xe080;

/// Two blocks' words (data and CRC): DMA fills one while the CPU checks the other.
pub type Bounce = [[u32; MAX_BLOCK_WORDS]; 2];

/// PIO0's state machine 0 running the SDIO programs.
pub struct PioStateMachine {
    _common: Common<'static, PIO0>,
    sm: StateMachine<'static, PIO0, 0>,
    dma: dma::Channel<'static>,
    /// Each mode's configuration, in `Mode::ALL` order.
    configs: [Config<'static, PIO0>; 5],
    /// The running mode's program start.
    origin: u8,
    bounce: &'static mut Bounce,
}

/// Loads the programs, sets the pins up and returns the card (identified on first use), its
/// blocks arriving through `bounce`.
pub fn card(
    pio0: Peri<'static, PIO0>,
    dma0: Peri<'static, DMA_CH0>,
    pins: Pins,
    bounce: &'static mut Bounce,
) -> Card {
    let Pio { mut common, mut sm0, .. } = Pio::new(pio0, Irqs);
    let loaded = ProgramId::ALL.map(|id| common.load_program(&id.placed()));
    let mut clk = common.make_pio_pin(pins.clk);
    clk.set_drive_strength(Drive::_8mA);
    clk.set_slew_rate(SlewRate::Fast);
    let mut lines = [
        common.make_pio_pin(pins.cmd),
        common.make_pio_pin(pins.dat0),
        common.make_pio_pin(pins.dat1),
        common.make_pio_pin(pins.dat2),
        common.make_pio_pin(pins.dat3),
    ];
    let mut bypass = 0;
    for line in &mut lines {
        line.set_pull(Pull::Up);
        line.set_slew_rate(SlewRate::Fast);
        bypass |= 1 << line.pin();
    }
    // At 50 MHz the two-cycle input synchronisers would eat the sampling margin.
    common.set_input_sync_bypass(bypass, bypass);
    let [cmd, dat0, dat1, dat2, dat3] = &lines;
    let dat = [dat0, dat1, dat2, dat3];
    let configs = Mode::ALL.map(|mode| mode_config(mode, &loaded, &clk, cmd, &dat));
    sm0.set_pin_dirs(Direction::Out, &[&clk]);
    sm0.set_pin_dirs(Direction::In, &[cmd, dat0, dat1, dat2, dat3]);
    let sm = PioStateMachine {
        _common: common,
        sm: sm0,
        dma: dma::Channel::new(dma0, Irqs),
        configs,
        origin: 0,
        bounce,
    };
    SdioCard::new(SdioProtocol::new(sm))
}

/// A mode's state machine configuration (divider set when the mode starts).
fn mode_config(
    mode: Mode,
    loaded: &[LoadedProgram<'static, PIO0>; 4],
    clk: &Pin<'static, PIO0>,
    cmd: &Pin<'static, PIO0>,
    dat: &[&Pin<'static, PIO0>; 4],
) -> Config<'static, PIO0> {
    let setting = mode.config();
    let index = ProgramId::ALL.iter().position(|&id| id == setting.program).unwrap_or(0);
    let mut config = Config::default();
    if let Some(program) = loaded.get(index) {
        config.use_program(program, &[clk]);
    }
    let pins: &[&Pin<'static, PIO0>] = match setting.in_base {
        Line::Dat0 => dat,
        _ => core::slice::from_ref(&cmd),
    };
    let out = pins.get(..usize::from(setting.out_count)).unwrap_or(pins);
    config.set_in_pins(pins);
    config.set_out_pins(out);
    config.set_set_pins(out);
    if let Some(first) = pins.first() {
        config.set_jmp_pin(first);
    }
    let direction = |left| if left { ShiftDirection::Left } else { ShiftDirection::Right };
    config.shift_in = ShiftConfig {
        threshold: shift::THRESHOLD,
        direction: direction(shift::IN_LEFT),
        auto_fill: shift::AUTOPUSH,
    };
    config.shift_out = ShiftConfig {
        threshold: shift::THRESHOLD,
        direction: direction(shift::OUT_LEFT),
        auto_fill: shift::AUTOPULL,
    };
    config
}

/// Identifies the card again (it may have been swapped); its size in bytes.
pub fn restart(card: &mut Card) -> Result<u64, Error> {
    let bytes = card.restart()?;
    if let Some(info) = card.card().info() {
        defmt::info!(
            "SD card (SDIO): {} blocks, {} MHz",
            info.blocks,
            info.speed.clock_hz() / 1_000_000
        );
    }
    Ok(bytes)
}

fn deadline(timeout_us: u32) -> Instant {
    Instant::now() + Duration::from_micros(u64::from(timeout_us))
}

impl picogpt_sdio::StateMachine for PioStateMachine {
    fn start(&mut self, mode: Mode, speed: Speed) {
        let index = Mode::ALL.iter().position(|&m| m == mode).unwrap_or(0);
        let mut config = self.configs[index];
        config.clock_divider = (speed.divider() as u16).into();
        self.origin = mode.config().program.origin();
        self.sm.set_enable(false);
        // A step cut short (a time-out) may have left CMD or DAT0-3 driven: `set pindirs, 0`
        // (side-set 0: CLK low) on the SET pins of the mode that ran releases them.
        // SAFETY: the state machine is stopped; SET PINDIRS touches only its own pins.
        unsafe { self.sm.exec_instr(RELEASE_SET_PINS) };
        self.sm.set_config(&config);
        self.sm.clear_fifos();
        self.sm.restart();
        self.sm.clkdiv_restart();
        self.sm.set_enable(true);
    }

    fn push(&mut self, word: u32, timeout_us: u32) -> bool {
        let until = deadline(timeout_us);
        while self.sm.tx().full() {
            if Instant::now() > until {
                return false;
            }
        }
        self.sm.tx().push(word);
        true
    }

    fn pop(&mut self, timeout_us: u32) -> Option<u32> {
        let until = deadline(timeout_us);
        loop {
            if let Some(word) = self.sm.rx().try_pull() {
                return Some(word);
            }
            if Instant::now() > until {
                return None;
            }
        }
    }

    fn wait_parked(&mut self, timeout_us: u32) -> bool {
        let until = deadline(timeout_us);
        while !(self.sm.tx().empty() && self.sm.get_addr() == self.origin) {
            if Instant::now() > until {
                return false;
            }
        }
        true
    }

    fn micros(&mut self) -> u64 {
        Instant::now().as_micros()
    }

    /// DMA into one bounce buffer while the CPU checks the block in the other: block n + 1
    /// streams in while `sink` verifies and copies block n.
    fn receive_blocks(
        &mut self,
        nibbles: u32,
        count: usize,
        timeout_us: u32,
        sink: &mut dyn FnMut(usize, &[u32]) -> bool,
    ) -> Result<(), ReceiveStop> {
        if count == 0 {
            return Ok(());
        }
        let words = ((nibbles / 8) as usize).min(MAX_BLOCK_WORDS);
        let credit = nibbles - 1;
        let mut credited = 0;
        let (rx, tx) = self.sm.rx_tx();
        let mut top_up = |credited: &mut usize, needed: usize| {
            while *credited < needed.min(count) && !tx.full() {
                tx.push(credit);
                *credited += 1;
            }
        };
        let [first, second] = &mut *self.bounce;
        top_up(&mut credited, 2);
        let transfer = rx.dma_pull(&mut self.dma, &mut first[..words], false);
        if !finish(transfer, deadline(timeout_us), || top_up(&mut credited, 2)) {
            return Err(ReceiveStop::Timeout(0));
        }
        for n in 0..count {
            let (done, next) =
                if n % 2 == 0 { (&mut *first, &mut *second) } else { (&mut *second, &mut *first) };
            if n + 1 == count {
                return if sink(n, &done[..words]) {
                    Ok(())
                } else {
                    Err(ReceiveStop::Rejected(n))
                };
            }
            let transfer = rx.dma_pull(&mut self.dma, &mut next[..words], false);
            let accepted = sink(n, &done[..words]);
            let arrived = finish(transfer, deadline(timeout_us), || top_up(&mut credited, n + 3));
            if !accepted {
                return Err(ReceiveStop::Rejected(n));
            }
            if !arrived {
                return Err(ReceiveStop::Timeout(n + 1));
            }
        }
        Ok(())
    }
}

/// Polls `transfer` until it completes (true) or `until` passes (false; dropping the
/// transfer aborts the DMA channel), calling `between` while it waits.
fn finish(mut transfer: dma::Transfer<'_>, until: Instant, mut between: impl FnMut()) -> bool {
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(()) = FuturePin::new(&mut transfer).poll(&mut context) {
            return true;
        }
        between();
        if Instant::now() > until {
            return false;
        }
    }
}
