//! The prompt catalogue: the text of every prompt in every language, and the
//! rendered audio that goes with it.
//!
//! Layout inside a flow directory:
//! - `prompts.yaml`: `prompts: { <id>: { nb: "...", en: "...", ... } }`
//! - `audio/<lang>/<id>.wav`: 8 kHz 16-bit mono PCM, made by `hotline prompts render`
//!   (espeak-ng) or recorded by a person, and committed so that `serve` needs no
//!   speech synthesiser.

pub mod catalogue;
pub mod render;

pub use catalogue::{Catalogue, CatalogueError};
