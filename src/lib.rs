//! hotline: a multilingual 24/7 telephone hotline.
//!
//! See `docs/architecture.md` for the map of the code.

pub mod acd;
pub mod flow;
pub mod language;
pub mod media;
pub mod metrics;
pub mod prompts;
pub mod registrar;
pub mod sdp;
pub mod sip;
pub mod api;
pub mod call;
pub mod cli;
pub mod config;
pub mod logging;
pub mod server;
