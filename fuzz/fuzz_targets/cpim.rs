//! libFuzzer entry point of the `cpim` target; the properties are in `src/cpim.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mwi_store_fuzz::cpim::check(data));
