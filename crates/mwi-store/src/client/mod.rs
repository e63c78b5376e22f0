//! The client side of mwi-store, for people (`mwi-store client …`) and for the end-to-end
//! tests: a SIP user agent that deposits, fetches and subscribes like a phone would, and a
//! stand-in presence server that answers PUBLISH.

pub mod chat;
pub mod cli;
pub mod presence;
pub mod sip_uac;
pub mod subscribe;
