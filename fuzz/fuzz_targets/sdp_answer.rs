//! libFuzzer entry point of the `sdp_answer` target; the properties are in `src/sdp_answer.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mwi_store_fuzz::sdp_answer::check(data));
