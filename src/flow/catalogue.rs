//! The prompt catalogue, `prompts.yaml`: the text of every prompt in every
//! language, read with positions like the flows (`file:line:col` errors), and
//! where each prompt's rendered audio lives. The flow loader, `prompts render`
//! and the prompt library all take it from here.

use super::load::{self, fields, Cx};
use super::yaml::{self, Node, Pos};
use super::Diagnostic;
use crate::language::Language;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File name of the catalogue inside a flow directory.
pub const CATALOGUE_FILE: &str = "prompts.yaml";
/// Folder (inside a flow directory) holding `<lang>/<id>.wav`.
pub const AUDIO_DIR: &str = "audio";

/// Prompt texts by id and language.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub prompts: BTreeMap<String, BTreeMap<Language, String>>,
}

impl Catalogue {
    /// Reads `<dir>/prompts.yaml` on its own (for `prompts render`): the
    /// catalogue, or every problem as `file:line:col: message`.
    pub fn load(dir: &Path) -> Result<Catalogue, Vec<Diagnostic>> {
        let path = dir.join(CATALOGUE_FILE);
        let text = load::read_bounded(&path)
            .map_err(|e| vec![load::diagnostic(&path, Pos::default(), e, false)])?;
        Catalogue::parse_text(&path, &text)
    }

    /// Parses catalogue text; `path` names it in diagnostics.
    pub fn parse_text(path: &Path, text: &str) -> Result<Catalogue, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let parsed = parse(&mut Cx::new(0, path, &mut diags), text);
        match parsed {
            Some((catalogue, _)) if diags.is_empty() => Ok(catalogue),
            _ => Err(diags),
        }
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

/// Reads the prompt catalogue: the ids with their texts by language, and the
/// ids that could not be read whole (their errors are reported).
pub fn parse(cx: &mut Cx, text: &str) -> Option<(Catalogue, BTreeSet<String>)> {
    let doc = match yaml::parse(text) {
        Ok(d) => d,
        Err(e) => {
            cx.err(e.pos, e.message);
            return None;
        }
    };
    let top = fields(cx, &doc, "the prompt catalogue", &["prompts"])?;
    let Some(prompts) = top.get("prompts") else {
        cx.missing(&doc, doc.pos, "the prompt catalogue needs `prompts:`");
        return None;
    };
    let map = fields(cx, prompts, "prompts", &[])?;
    let mut catalogue = Catalogue::default();
    let mut unread = BTreeSet::new();
    for (id, _, value) in &map.entries {
        let errors = cx.errors();
        if let Some(langs) = fields(cx, value, &format!("prompt `{id}`"), &[]) {
            let mut texts = BTreeMap::new();
            for (code, lkey, t) in &langs.entries {
                let Ok(lang) = code.parse::<Language>() else {
                    cx.err(
                        lkey.pos,
                        format!("unknown language `{code}` in prompt `{id}`: expected one of nb, en, ar, pl, ru, ro, lt"),
                    );
                    continue;
                };
                if let Some(s) = text_of(cx, t, id) {
                    texts.insert(lang, s);
                }
            }
            catalogue.prompts.insert(id.clone(), texts);
        }
        if cx.errors() > errors {
            unread.insert(id.clone());
        }
    }
    Some((catalogue, unread))
}

fn text_of(cx: &mut Cx, node: &Node, id: &str) -> Option<String> {
    match node.as_text() {
        Some(s) if !s.trim().is_empty() => Some(s),
        _ => {
            cx.err(node.pos, format!("prompt `{id}` has an empty text"));
            None
        }
    }
}

/// Which `audio/<lang>/<id>.wav` files exist.
pub fn scan_audio(dir: &Path) -> BTreeSet<(Language, String)> {
    let mut found = BTreeSet::new();
    for lang in Language::ALL {
        let folder = dir.join(AUDIO_DIR).join(lang.code());
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten().take(100_000) {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("wav") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    found.insert((lang, stem.to_string()));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_texts_by_language() {
        let c = Catalogue::parse_text(
            Path::new("prompts.yaml"),
            "prompts:\n  welcome:\n    nb: Velkommen\n    en: Welcome\n",
        )
        .expect("valid catalogue");
        assert_eq!(c.text("welcome", Language::En), Some("Welcome"));
        assert_eq!(c.text("welcome", Language::Ar), None);
    }

    #[test]
    fn unknown_language_is_an_error() {
        let e = Catalogue::parse_text(Path::new("p.yaml"), "prompts:\n  w:\n    xx: hi\n");
        assert!(e.is_err());
        let shown: Vec<String> = e
            .expect_err("invalid")
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            shown,
            ["p.yaml:3:5: unknown language `xx` in prompt `w`: expected one of nb, en, ar, pl, ru, ro, lt"]
        );
    }

    #[test]
    fn a_missing_or_broken_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Catalogue::load(dir.path()).expect_err("no file");
        assert!(
            e[0].to_string().contains("prompts.yaml:1:1: cannot read"),
            "{e:?}"
        );
        std::fs::write(dir.path().join(CATALOGUE_FILE), "prompts: [").expect("write");
        let e = Catalogue::load(dir.path()).expect_err("broken");
        assert!(e[0].to_string().contains("prompts.yaml:1:"), "{e:?}");
    }
}
