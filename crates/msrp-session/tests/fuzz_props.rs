//! Property tests (run by plain `cargo test`) for the parsers the fuzz targets in `fuzz/` also
//! cover: CPIM (RFC 3862), SDP answer building (RFC 3264, RFC 4975 §8, RFC 6135) and the
//! is-composing (RFC 3994) and IMDN (RFC 5438) bodies. Arbitrary bytes never panic, and
//! values built from structured input survive a write/parse round trip.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, TimeZone};
use msrp_session::cpim::{CpimAddress, CpimHeader, CpimMessage};
use msrp_session::imdn::{Imdn, ImdnStatus, NotificationKind};
use msrp_session::iscomposing::{ComposingState, IsComposing};
use msrp_session::{build_answer, LocalMedia, MsrpOffer, MsrpUri, SdpError, Setup, SetupRole};
use proptest::prelude::*;

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..1024)
}

/// Text that survives XML trimming: printable ASCII (markup characters included, to exercise
/// escaping), no space at either end.
fn xml_text() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,30}[!-~])?"
}

fn datetime() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (0i64..4_000_000_000, -(14 * 60)..=(14 * 60)).prop_map(|(secs, offset_minutes)| {
        let offset = FixedOffset::east_opt(offset_minutes * 60).expect("offset within ±14 h");
        offset
            .timestamp_opt(secs, 0)
            .single()
            .expect("whole-second timestamp")
    })
}

fn cpim_header() -> impl Strategy<Value = CpimHeader> {
    (
        "[A-Za-z][A-Za-z0-9.-]{0,15}",
        prop_oneof![Just(String::new()), ";[a-z]{1,5}=[a-z]{1,5}"],
        "[ -~]{0,40}",
    )
        .prop_map(|(name, params, value)| CpimHeader {
            name,
            params,
            value,
        })
}

fn cpim_message() -> impl Strategy<Value = CpimMessage> {
    (
        proptest::collection::vec(cpim_header(), 0..6),
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..4),
        any_bytes(),
    )
        .prop_map(|(headers, content_headers, body)| CpimMessage {
            headers,
            content_headers,
            body: Bytes::from(body),
        })
}

const OFFER_TYPES: &[&str] = &[
    "text/plain",
    "message/cpim",
    "*",
    "text/*",
    "image/png",
    "application/im-iscomposing+xml",
    "message/imdn+xml",
];

/// Which of `OFFER_TYPES` our defaults accept under each pattern (RFC 4975 §8.6).
fn matches(pattern: &str, ours: &str) -> bool {
    pattern == "*"
        || pattern.eq_ignore_ascii_case(ours)
        || pattern
            .strip_suffix("/*")
            .is_some_and(|major| ours.split_once('/').is_some_and(|(m, _)| m == major))
}

#[derive(Debug, Clone)]
struct Offer {
    tls: bool,
    setup: Option<&'static str>,
    types: Vec<&'static str>,
    wrapped: Vec<&'static str>,
    audio_before: usize,
    audio_after: usize,
    port: u16,
}

impl Offer {
    fn sdp(&self) -> String {
        let (proto, scheme) = if self.tls {
            ("TCP/TLS/MSRP", "msrps")
        } else {
            ("TCP/MSRP", "msrp")
        };
        let mut s = String::from("v=0\r\no=- 7 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\n");
        for i in 0..self.audio_before {
            s.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 4000 + i));
        }
        s.push_str(&format!(
            "m=message {} {proto} *\r\nc=IN IP4 192.0.2.9\r\n",
            self.port
        ));
        if !self.types.is_empty() {
            s.push_str(&format!("a=accept-types:{}\r\n", self.types.join(" ")));
        }
        if !self.wrapped.is_empty() {
            s.push_str(&format!(
                "a=accept-wrapped-types:{}\r\n",
                self.wrapped.join(" ")
            ));
        }
        if let Some(setup) = self.setup {
            s.push_str(&format!("a=setup:{setup}\r\n"));
        }
        s.push_str(&format!(
            "a=path:{scheme}://192.0.2.9:{}/peer1;tcp\r\n",
            self.port
        ));
        for i in 0..self.audio_after {
            s.push_str(&format!("m=audio {} RTP/AVP 8\r\n", 5000 + i));
        }
        s
    }
}

fn offer() -> impl Strategy<Value = Offer> {
    (
        any::<bool>(),
        prop::sample::select(vec![
            None,
            Some("active"),
            Some("passive"),
            Some("actpass"),
            Some("holdconn"),
        ]),
        prop::sample::subsequence(OFFER_TYPES.to_vec(), 0..=OFFER_TYPES.len()),
        prop::sample::subsequence(OFFER_TYPES.to_vec(), 0..=OFFER_TYPES.len()),
        0usize..3,
        0usize..3,
        1u16..=65535,
    )
        .prop_map(
            |(tls, setup, types, wrapped, audio_before, audio_after, port)| Offer {
                tls,
                setup,
                types,
                wrapped,
                audio_before,
                audio_after,
                port,
            },
        )
}

fn local() -> LocalMedia {
    let path = MsrpUri::parse_path("msrp://127.0.0.1:2855/ours1;tcp").expect("fixed path");
    LocalMedia::with_defaults(path, Some(65536))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cpim_parse_never_panics_and_round_trips(data in any_bytes()) {
        if let Ok(m) = CpimMessage::parse(&data) {
            let _ = (m.from(), m.to(), m.datetime(), m.subjects(), m.namespaces(), m.require());
            prop_assert_eq!(CpimMessage::parse(&m.to_bytes()), Ok(m));
        }
    }

    #[test]
    fn cpim_built_message_round_trips(m in cpim_message()) {
        prop_assert_eq!(CpimMessage::parse(&m.to_bytes()), Ok(m));
    }

    #[test]
    fn cpim_address_round_trips(
        name in proptest::option::of("[A-Za-z0-9]([A-Za-z0-9 ,@._-]{0,18}[A-Za-z0-9])?"),
        uri in "(sip|im):[a-z0-9]{1,10}@[a-z0-9.]{1,20}",
    ) {
        let address = CpimAddress::new(name.as_deref(), uri);
        prop_assert_eq!(CpimAddress::parse(&address.to_string()), Some(address));
    }

    #[test]
    fn sdp_answer_never_panics_on_bytes(data in any_bytes()) {
        if let Ok((answer, _)) = build_answer(&data, &local()) {
            prop_assert!(MsrpOffer::parse(answer.as_bytes()).is_ok(), "{}", answer);
        }
    }

    #[test]
    fn sdp_answer_follows_the_offer(offer in offer()) {
        let local = local();
        let result = build_answer(offer.sdp().as_bytes(), &local);
        let common: Vec<String> = local
            .accept_types
            .iter()
            .filter(|t| offer.types.iter().any(|p| matches(p, t)))
            .cloned()
            .collect();
        if offer.tls {
            prop_assert_eq!(result, Err(SdpError::TransportUnsupported));
        } else if offer.setup == Some("holdconn") {
            prop_assert_eq!(result, Err(SdpError::HoldConn));
        } else if common.is_empty() {
            prop_assert_eq!(result, Err(SdpError::NoCommonTypes));
        } else {
            let (answer, negotiated) = result.expect("answer built");
            // RFC 6135 §4: we are passive unless the offerer is.
            let (role, setup) = if offer.setup == Some("passive") {
                (SetupRole::Active, Setup::Active)
            } else {
                (SetupRole::Passive, Setup::Passive)
            };
            prop_assert_eq!(negotiated.role, role);
            prop_assert_eq!(&negotiated.accept_types, &common);
            let ours = MsrpOffer::parse(answer.as_bytes()).expect("answer is MSRP SDP");
            prop_assert_eq!(ours.media_index, offer.audio_before);
            prop_assert_eq!(ours.setup, setup);
            prop_assert_eq!(&ours.path, &local.path);
            prop_assert_eq!(&ours.accept_types, &common);
            // RFC 3264 §6: one m= line per offered one, the others rejected with port 0.
            let lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
            prop_assert_eq!(lines.len(), offer.audio_before + 1 + offer.audio_after);
            prop_assert_eq!(lines.iter().filter(|l| l.starts_with("m=audio 0 ")).count(),
                offer.audio_before + offer.audio_after);
        }
    }

    #[test]
    fn xml_bodies_never_panic_and_round_trip(data in any_bytes()) {
        if let Ok(c) = IsComposing::parse(&data) {
            prop_assert_eq!(IsComposing::parse(&c.to_bytes()), Ok(c));
        }
        if let Ok(i) = Imdn::parse(&data) {
            prop_assert_eq!(Imdn::parse(&i.to_bytes()), Ok(i));
        }
    }

    #[test]
    fn iscomposing_round_trips(
        active in any::<bool>(),
        last_active in proptest::option::of(datetime()),
        content_type in proptest::option::of("[a-z]{1,8}/[a-z+.-]{1,12}"),
        refresh in proptest::option::of(any::<u32>()),
    ) {
        let c = IsComposing {
            state: if active { ComposingState::Active } else { ComposingState::Idle },
            last_active,
            content_type,
            refresh,
        };
        prop_assert_eq!(IsComposing::parse(&c.to_bytes()), Ok(c));
    }

    #[test]
    fn imdn_round_trips(
        message_id in xml_text(),
        datetime in datetime(),
        recipient_uri in proptest::option::of(xml_text()),
        original_recipient_uri in proptest::option::of(xml_text()),
        subject in proptest::option::of(xml_text()),
        kind in prop::sample::select(vec![
            NotificationKind::Delivery,
            NotificationKind::Display,
            NotificationKind::Processing,
        ]),
        status in prop::sample::select(vec![
            ImdnStatus::Delivered,
            ImdnStatus::Failed,
            ImdnStatus::Forbidden,
            ImdnStatus::Error,
            ImdnStatus::Displayed,
            ImdnStatus::Processed,
            ImdnStatus::Stored,
        ]),
    ) {
        let i = Imdn {
            message_id,
            datetime,
            recipient_uri,
            original_recipient_uri,
            subject,
            kind,
            status,
        };
        prop_assert_eq!(Imdn::parse(&i.to_bytes()), Ok(i));
    }
}
