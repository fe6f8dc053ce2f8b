//! The prompt library: every prompt's audio decoded once at start, converted to
//! 8 kHz mono and pre-encoded to both G.711 laws (`Clip`), then shared by all
//! calls.

use super::clip::{Clip, PromptError};
use super::music;
use crate::flow::Catalogue;
use crate::language::Language;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A prompt the catalogue lists but whose audio file does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingAudio {
    pub id: String,
    pub language: Language,
    pub path: PathBuf,
}

impl std::fmt::Display for MissingAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: no audio for prompt `{}` in {}; render it with `hotline prompts render` or record it",
            self.path.display(),
            self.id,
            self.language
        )
    }
}

/// Every prompt's audio, loaded once and shared by all calls.
#[derive(Debug, Default)]
pub struct PromptLibrary {
    /// Clips by prompt id, then by language in menu order.
    clips: HashMap<String, [Option<Arc<Clip>>; Language::ALL.len()]>,
    missing: Vec<MissingAudio>,
    /// The directory's own hold music, if it has one.
    music: Option<Arc<Clip>>,
}

fn language_index(language: Language) -> usize {
    Language::ALL
        .iter()
        .position(|&l| l == language)
        .unwrap_or_default()
}

impl PromptLibrary {
    /// Reads `audio/<lang>/<id>.wav` for every text in the catalogue. Files that
    /// are absent are listed by `missing()`; a file that is present but unusable
    /// is an error.
    pub fn load(dir: &Path, catalogue: &Catalogue) -> Result<PromptLibrary, PromptError> {
        let mut library = PromptLibrary::default();
        for (id, texts) in &catalogue.prompts {
            for &language in texts.keys() {
                let path = Catalogue::audio_path(dir, id, language);
                match std::fs::metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        library.missing.push(MissingAudio {
                            id: id.clone(),
                            language,
                            path,
                        });
                        continue;
                    }
                    Err(e) => {
                        return Err(PromptError {
                            path,
                            reason: e.to_string(),
                        })
                    }
                    Ok(_) => {}
                }
                library.insert(id, language, Arc::new(Clip::from_wav_file(&path)?));
            }
        }
        library.music = music::load_file(dir)?;
        Ok(library)
    }

    /// The clip of a prompt in a language, if its audio was loaded.
    pub fn clip(&self, id: &str, language: Language) -> Option<Arc<Clip>> {
        self.clips
            .get(id)?
            .get(language_index(language))?
            .as_ref()
            .map(Arc::clone)
    }

    /// Music on hold: `audio/music/hold.wav` of the directory loaded, else the
    /// generated piece.
    pub fn hold_music(&self) -> Arc<Clip> {
        match &self.music {
            Some(clip) => Arc::clone(clip),
            None => music::generated(),
        }
    }

    /// Prompts listed in the catalogue without an audio file (for the validator).
    pub fn missing(&self) -> &[MissingAudio] {
        &self.missing
    }

    /// Number of clips loaded.
    pub fn len(&self) -> usize {
        self.clips.values().flatten().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// Adds a clip made elsewhere (tests, generated tones).
    pub fn insert(&mut self, id: &str, language: Language, clip: Arc<Clip>) {
        let slots = self.clips.entry(id.to_string()).or_default();
        if let Some(slot) = slots.get_mut(language_index(language)) {
            *slot = Some(clip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testing::{foreign_wav, sine_f32};
    use crate::media::{g711, Codec};
    use std::collections::BTreeMap;

    fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[f32]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, foreign_wav(spec, samples)).expect("write");
    }

    fn catalogue(entries: &[(&str, &[Language])]) -> Catalogue {
        let mut prompts = BTreeMap::new();
        for (id, languages) in entries {
            let texts = languages.iter().map(|&l| (l, id.to_string())).collect();
            prompts.insert(id.to_string(), texts);
        }
        Catalogue { prompts }
    }

    #[test]
    fn loads_every_format_and_lists_missing_audio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = |channels, sample_rate, bits, format| hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let int = hound::SampleFormat::Int;
        let float = hound::SampleFormat::Float;
        let tone8k = sine_f32(440.0, 8000, 0.1, 0.5);
        let tone48k = sine_f32(440.0, 48000, 0.1, 0.5);
        let files = [
            ("plain", Language::En, spec(1, 8000, 16, int), &tone8k),
            ("stereo", Language::En, spec(2, 48000, 16, int), &tone48k),
            ("byte", Language::Nb, spec(1, 8000, 8, int), &tone8k),
            ("deep", Language::Nb, spec(1, 8000, 24, int), &tone8k),
            ("float", Language::Ar, spec(1, 48000, 32, float), &tone48k),
        ];
        for (id, language, spec, samples) in &files {
            write_wav(
                &Catalogue::audio_path(dir.path(), id, *language),
                *spec,
                samples,
            );
        }
        let cat = catalogue(&[
            ("plain", &[Language::En, Language::Pl]),
            ("stereo", &[Language::En]),
            ("byte", &[Language::Nb]),
            ("deep", &[Language::Nb]),
            ("float", &[Language::Ar]),
        ]);
        let library = PromptLibrary::load(dir.path(), &cat).expect("loads");
        assert_eq!(library.len(), 5);
        let reference = Clip::from_samples(
            &tone8k
                .iter()
                .map(|&v| (v * 32767.0) as i16)
                .collect::<Vec<_>>(),
        );
        for (id, language, _, _) in &files {
            let clip = library.clip(id, *language).expect("clip");
            assert_eq!(clip.frames(), 5, "{id}");
            // Decoded levels agree with the 8 kHz 16-bit original (within one μ-law step
            // in the middle of the clip, where the resampler has settled).
            let got = clip.frame(Codec::Pcmu, 2).expect("frame");
            let want = reference.frame(Codec::Pcmu, 2).expect("frame");
            for (g, w) in got.iter().zip(want) {
                let (g, w) = (g711::ulaw_to_linear(*g), g711::ulaw_to_linear(*w));
                assert!(
                    (i32::from(g) - i32::from(w)).abs() <= 1100,
                    "{id}: {g} vs {w}"
                );
            }
        }
        assert!(library.clip("plain", Language::Pl).is_none());
        assert_eq!(library.missing().len(), 1);
        assert_eq!(library.missing()[0].id, "plain");
        assert!(library.missing()[0].to_string().contains("plain.wav"));
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Catalogue::audio_path(dir.path(), "broken", Language::Ro);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"RIFF....WAVEnot really").expect("write");
        let err = PromptLibrary::load(dir.path(), &catalogue(&[("broken", &[Language::Ro])]))
            .expect_err("must fail");
        let message = err.to_string();
        assert!(message.contains("broken.wav"), "{message}");
        assert!(message.contains("8 kHz 16-bit mono"), "{message}");
    }
}
