//! Links with esp-hal's `linkall.x` (memory map, sections and the ROM's functions).

fn main() {
    println!("cargo::rustc-link-arg=-Tlinkall.x");
    println!("cargo::rerun-if-changed=build.rs");
}
