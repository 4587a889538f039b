//! The console on core 0: a USB CDC-ACM serial port. Typed characters are echoed and
//! gathered into lines for the model; the model's output is sent back as it comes.

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_rp::Peri;
use embassy_rp::peripherals::USB;
use embassy_rp::usb::{Driver, InterruptHandler};
use embassy_usb::class::cdc_acm::{CdcAcmClass, ControlChanged, Receiver, Sender, State};
use embassy_usb::{Builder, Config, UsbDevice};
use picogpt_board::line::{Edit, Editor};
use static_cell::StaticCell;

use crate::link::{LINES, OUTPUT};

embassy_rp::bind_interrupts!(struct Irqs {
    USBCTRL_IRQ => InterruptHandler<USB>;
});

/// Full-speed bulk packets.
const PACKET: usize = 64;

/// What the console prints when a terminal connects.
const BANNER: &str = "picogpt on Pico 2: type a prompt (text, or token ids such as 36235,39141) \
                      and flags (-n 8 --bits), or Enter for the default prompt\r\n";

type UsbDriver = Driver<'static, USB>;

/// Brings up USB and spawns its tasks.
pub fn start(spawner: Spawner, usb: Peri<'static, USB>) {
    static CONFIG_DESCRIPTOR: StaticCell<[u8; 256]> = StaticCell::new();
    static BOS_DESCRIPTOR: StaticCell<[u8; 256]> = StaticCell::new();
    static CONTROL: StaticCell<[u8; 64]> = StaticCell::new();
    static STATE: StaticCell<State> = StaticCell::new();

    // A development VID/PID pair, as embassy's examples use; a product needs its own.
    let mut config = Config::new(0xc0de, 0xcafe);
    config.manufacturer = Some("picogpt-embedded");
    config.product = Some("picoGPT console");
    config.serial_number = Some("pico2");
    config.max_power = 100;
    config.max_packet_size_0 = PACKET as u8;

    let mut builder = Builder::new(
        Driver::new(usb, Irqs),
        config,
        CONFIG_DESCRIPTOR.init([0; 256]),
        BOS_DESCRIPTOR.init([0; 256]),
        &mut [],
        CONTROL.init([0; 64]),
    );
    let class = CdcAcmClass::new(&mut builder, STATE.init(State::new()), PACKET as u16);
    let device = builder.build();
    let (tx, rx, control) = class.split_with_control();
    match (run_device(device), read_lines(rx), send_output(tx), greet(control)) {
        (Ok(device), Ok(reader), Ok(writer), Ok(greeter)) => {
            spawner.spawn(device);
            spawner.spawn(reader);
            spawner.spawn(writer);
            spawner.spawn(greeter);
        }
        _ => defmt::error!("USB tasks could not be spawned"),
    }
}

#[embassy_executor::task]
async fn run_device(mut device: UsbDevice<'static, UsbDriver>) -> ! {
    device.run().await
}

/// Prints the banner and a prompt each time a terminal opens the port (raises DTR): a
/// terminal opened after the board enumerated sees them too.
#[embassy_executor::task]
async fn greet(control: ControlChanged<'static>) -> ! {
    let mut open = false;
    loop {
        control.control_changed().await;
        let dtr = control.dtr();
        if dtr && !open {
            echo(BANNER.as_bytes());
            echo(b"> ");
        }
        open = dtr;
    }
}

/// Gathers typed bytes (UTF-8 text included) into lines, echoing them, with backspace; hands
/// each line to core 1.
#[embassy_executor::task]
async fn read_lines(mut rx: Receiver<'static, UsbDriver>) -> ! {
    let mut editor = Editor::new();
    let mut packet = [0u8; PACKET];
    loop {
        rx.wait_connection().await;
        while let Ok(n) = rx.read_packet(&mut packet).await {
            for &byte in packet.get(..n).unwrap_or_default() {
                match editor.edit(byte) {
                    Edit::Enter => {
                        echo(b"\r\n");
                        LINES.send(editor.take()).await;
                    }
                    Edit::Echo(byte) => echo(&[byte]),
                    Edit::Erase => echo(b"\x08 \x08"),
                    Edit::Ignore => {}
                }
            }
        }
    }
}

/// Queues an echo; dropped if the pipe is full.
fn echo(bytes: &[u8]) {
    let _ = OUTPUT.try_write(bytes);
}

/// Sends whatever the pipe holds; while no terminal listens it is read and dropped, so core 1
/// never waits for a terminal that is not there.
#[embassy_executor::task]
async fn send_output(mut tx: Sender<'static, UsbDriver>) -> ! {
    // One byte short of a full packet: no zero-length packet is ever needed.
    let mut chunk = [0u8; PACKET - 1];
    loop {
        let n = OUTPUT.read(&mut chunk).await;
        if !tx.dtr() {
            continue;
        }
        let packet = chunk.get(..n).unwrap_or_default();
        let sent = select(tx.write_packet(packet), embassy_time::Timer::after_millis(500)).await;
        if let Either::First(Err(_)) | Either::Second(()) = sent {
            defmt::debug!("console packet dropped");
        }
    }
}
