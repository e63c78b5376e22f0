//! libFuzzer entry point of the `message_summary` target; the properties are in `src/message_summary.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mwi_store_fuzz::message_summary::check(data));
