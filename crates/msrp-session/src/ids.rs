//! Random identifiers: session ids (≥ 80 bits, RFC 4975 §14.1), transaction ids and
//! Message-IDs, from the OS-seeded CSPRNG behind `rand::rng()`.

use rand::distr::Alphanumeric;
use rand::Rng;

fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A session id: 20 alphanumerics, about 119 bits.
pub fn session_id() -> String {
    random_alphanumeric(20)
}

/// A transaction id: 16 alphanumerics (RFC 4975 §9 allows 4 to 32 ident chars).
pub fn transaction_id() -> String {
    random_alphanumeric(16)
}

/// A Message-ID: 16 alphanumerics.
pub fn message_id() -> String {
    random_alphanumeric(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::is_valid_transaction_id;

    #[test]
    fn ids_are_long_valid_and_distinct() {
        let a = session_id();
        let b = session_id();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(is_valid_transaction_id(&transaction_id()));
        assert_ne!(message_id(), message_id());
    }
}
