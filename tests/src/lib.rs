//! Harness for the end-to-end tests in `tests/tests/`: starts the real `mwi-store` binary on
//! loopback ports with a temporary store and stops it when the handle drops.
