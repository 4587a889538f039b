//! `host-tools`: the desktop command line.
fn main() {}
