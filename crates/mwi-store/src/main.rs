//! `mwi-store` binary entry point.

fn main() {
    println!("mwi-store {}", env!("CARGO_PKG_VERSION"));
}
