//! The XML bodies of msrp-session: is-composing (RFC 3994) and IMDN (RFC 5438). The same
//! bytes go to both parsers. Properties: nothing panics, and what parsed re-serialises to a
//! document that parses to the same value.

use msrp_session::imdn::Imdn;
use msrp_session::iscomposing::IsComposing;

/// Run every property on one XML body.
pub fn check(data: &[u8]) {
    if let Ok(composing) = IsComposing::parse(data) {
        let again = IsComposing::parse(&composing.to_bytes());
        assert_eq!(
            again.as_ref(),
            Ok(&composing),
            "is-composing round trip changed it"
        );
    }
    if let Ok(imdn) = Imdn::parse(data) {
        let again = Imdn::parse(&imdn.to_bytes());
        assert_eq!(again.as_ref(), Ok(&imdn), "IMDN round trip changed it");
    }
}
