//! `hotline prompts render`: the rendered audio that goes with the prompt
//! catalogue.
//!
//! Layout inside a flow directory:
//! - `prompts.yaml`: `prompts: { <id>: { nb: "...", en: "...", ... } }`, read by
//!   [`crate::flow::Catalogue`] like every flow file;
//! - `audio/<lang>/<id>.wav`: 8 kHz 16-bit mono PCM, made by `hotline prompts render`
//!   (espeak-ng) or recorded by a person, and committed so that `serve` needs no
//!   speech synthesiser.

pub mod render;
