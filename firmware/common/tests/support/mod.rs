//! Test doubles for the card's read path: disks in RAM formatted FAT16 or FAT32, and an SD
//! card that speaks SPI mode byte by byte (as QEMU's `ssi-sd` and real cards do) over one.

#![allow(dead_code)]

pub mod disk;
pub mod sim;

#[allow(unused_imports)]
pub use disk::RamDisk;
#[allow(unused_imports)]
pub use sim::{SimBus, SimCard, SimCs, SimDelay};
