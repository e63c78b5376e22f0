//! libFuzzer entry point of the `msrp_stream` target; the properties are in `src/msrp_stream.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mwi_store_fuzz::msrp_stream::check(data));
