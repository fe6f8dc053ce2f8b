//! Reading `prompts.yaml`.

use crate::language::Language;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the catalogue inside a flow directory.
pub const CATALOGUE_FILE: &str = "prompts.yaml";
/// Folder (inside a flow directory) holding `<lang>/<id>.wav`.
pub const AUDIO_DIR: &str = "audio";

/// Prompt texts by id and language.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub prompts: BTreeMap<String, BTreeMap<Language, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{message}")]
    Syntax { path: PathBuf, message: String },
}

impl Catalogue {
    /// Reads `<dir>/prompts.yaml`.
    pub fn load(dir: &Path) -> Result<Catalogue, CatalogueError> {
        let path = dir.join(CATALOGUE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| CatalogueError::Io {
            path: path.clone(),
            source,
        })?;
        Catalogue::parse(&path, &text)
    }

    /// Parses catalogue text; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Catalogue, CatalogueError> {
        serde_saphyr::from_str(text).map_err(|e| CatalogueError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The text of a prompt in a language, if the catalogue has it.
    pub fn text(&self, id: &str, language: Language) -> Option<&str> {
        self.prompts.get(id)?.get(&language).map(String::as_str)
    }

    /// Where the rendered audio of a prompt lives.
    pub fn audio_path(dir: &Path, id: &str, language: Language) -> PathBuf {
        dir.join(AUDIO_DIR)
            .join(language.code())
            .join(format!("{id}.wav"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_texts_by_language() {
        let c = Catalogue::parse(
            Path::new("prompts.yaml"),
            "prompts:\n  welcome:\n    nb: Velkommen\n    en: Welcome\n",
        )
        .expect("valid catalogue");
        assert_eq!(c.text("welcome", Language::En), Some("Welcome"));
        assert_eq!(c.text("welcome", Language::Ar), None);
    }

    #[test]
    fn unknown_language_is_an_error() {
        let e = Catalogue::parse(Path::new("p.yaml"), "prompts:\n  w:\n    xx: hi\n");
        assert!(e.is_err());
    }
}
