//! Random tokens for tags and branches (RFC 3261 §19.3: at least 32 bits of randomness).

use rand::Rng;

/// A new From/To tag: 64 random bits as hex.
pub fn new_tag() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A new Via branch with the RFC 3261 magic cookie and 96 random bits.
pub fn new_branch() -> String {
    let mut rng = rand::rng();
    format!(
        "z9hG4bK{:016x}{:08x}",
        rng.random::<u64>(),
        rng.random::<u32>()
    )
}
