//! hotline: a multilingual 24/7 telephone hotline.
//!
//! See `docs/architecture.md` for the map of the code.

pub mod acd;
pub mod api;
pub mod audio;
pub mod call;
pub mod cdr;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod digest;
pub mod duration;
pub mod events;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod ids;
pub mod language;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod outcome;
pub mod prompts;
pub mod registrar;
pub mod reload;
pub mod sdp;
pub mod server;
pub mod sip;
pub mod time;
pub mod today;
pub mod trunk;
