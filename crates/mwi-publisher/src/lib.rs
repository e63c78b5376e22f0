//! Message-waiting indication: RFC 3842 `application/simple-message-summary` bodies with the
//! RFC 3458 `Text-Message` class, the RFC 3903 PUBLISH state machine (sans-IO) and the RFC 6665
//! SUBSCRIBE/NOTIFY notifier.

pub mod publication;
pub mod subscription;
pub mod summary;

pub use publication::{
    Publication, PublicationConfig, PublicationEvent, PublicationState, PublishOutcome,
    PublishRequest, SipEtag,
};
pub use subscription::{
    admit_subscribe, NotifyRequest, SubscribeRejection, SubscribeRequest, Subscription,
    SubscriptionConfig, SubscriptionEvent, SubscriptionState, TerminationReason, EVENT_PACKAGE,
};
pub use summary::{
    MessageContextClass, MessageCounts, MessageHeaders, MessageSummary, SummaryConfig,
    SummaryParseError, CONTENT_TYPE,
};
