//! Errors of the endpoint API.

use crate::endpoint::ListenAddr;

/// Starting the endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {0}: {1}")]
    Bind(ListenAddr, std::io::Error),
    #[error("no listen address configured")]
    NoListener,
    #[error("{0} needs a TLS certificate and key")]
    NoTlsCertificate(ListenAddr),
}

/// Answering or acting on a server transaction or dialog failed.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("the request was cancelled (CANCEL or BYE) before it was answered")]
    Cancelled,
    #[error("this request cannot do that: {0}")]
    WrongRequest(&'static str),
    #[error("invalid header {0}")]
    InvalidHeader(String),
    #[error("SIP stack error: {0}")]
    Stack(String),
    /// A request we sent in the dialog (BYE) failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A request we sent in the dialog (BYE) got this final status.
    #[error("answered {0}")]
    Answered(u16),
}

/// A client transaction (PUBLISH, NOTIFY, BYE) did not produce a usable final response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Timer F (non-INVITE, RFC 3261 §17.1.2.2) fired: no final response in 64*T1.
    #[error("no final response before Timer F")]
    Timeout,
    /// NOTIFY answered 481: the subscription is gone (RFC 6665 §4.1.3).
    #[error("subscription does not exist (481)")]
    NoSuchSubscription,
    /// The subscription dialog is not (or no longer) confirmed.
    #[error("subscription dialog is not active")]
    NotActive,
    /// No outbound proxy and the target host is not an IP literal (we never use DNS).
    #[error("no route to {0}")]
    NoRoute(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("SIP stack error: {0}")]
    Stack(String),
}

impl From<rsipstack::Error> for SipError {
    fn from(e: rsipstack::Error) -> Self {
        SipError::Stack(e.to_string())
    }
}

impl From<rsipstack::sip::Error> for ClientError {
    fn from(e: rsipstack::sip::Error) -> Self {
        ClientError::Stack(e.to_string())
    }
}

impl From<rsipstack::Error> for ClientError {
    fn from(e: rsipstack::Error) -> Self {
        ClientError::Stack(e.to_string())
    }
}
