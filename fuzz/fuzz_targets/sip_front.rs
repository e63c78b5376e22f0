//! libFuzzer entry point of the `sip_front` target; the properties are in `src/sip_front.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mwi_store_fuzz::sip_front::check(data));
