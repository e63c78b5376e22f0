//! libFuzzer entry point of the `xml_bodies` target; the properties are in `src/xml_bodies.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mwi_store_fuzz::xml_bodies::check(data));
