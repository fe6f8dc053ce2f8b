//! Rendering the catalogue to audio: every (prompt, language) text becomes
//! `audio/<lang>/<id>.wav`, 8 kHz 16-bit mono PCM, ready to be encoded to G.711
//! at load.
//!
//! Speech comes from a [`Synthesiser`] (espeak-ng in production, a fake in
//! tests). `audio/manifest.json` remembers, per file, a hash of what it was
//! made from and a hash of the bytes written, so that:
//! - unchanged texts are not synthesised again (re-rendering is cheap and
//!   leaves the committed files byte for byte as they were);
//! - a WAV someone replaced by a human recording (its bytes no longer match
//!   the manifest, or it has no entry) is kept unless `force` is set.

use crate::audio::{clamp_i16, resample, wav, Pcm, ResampleError};
use crate::flow::catalogue::{Catalogue, AUDIO_DIR};
use crate::flow::Diagnostic;
use crate::language::Language;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Sample rate of every rendered prompt: what G.711 carries.
pub const OUTPUT_RATE: u32 = 8_000;
/// File (inside the audio folder) recording what each WAV was made from.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Normal speaking pace for espeak-ng, in words per minute.
pub const DEFAULT_SPEED_WPM: u32 = 160;
/// Longer texts are refused: a prompt is a few sentences, and this bounds
/// the synthesiser's output.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Peak level of rendered audio (about -3 dBFS), so that every language
/// plays at the same loudness whatever the voice's own level.
const TARGET_PEAK: f64 = 0.7 * i16::MAX as f64;
/// Part of every manifest source hash: changing how audio is post-processed
/// must re-render everything.
const PIPELINE: &str = "pcm16/8000/mono/peak-3dB/trim-50ms/v1";
/// Silence kept before and after speech, in samples (50 ms). The synthesiser
/// pads with about 350 ms; trimmed, announcements built from pieces ("you are
/// number" + "five" + "in the queue") flow like one sentence.
const EDGE_SILENCE: usize = 400;
/// Below this fraction of the peak (about -46 dB) a sample counts as silence.
const SILENCE_FRACTION: f64 = 0.005;
const INSTALL_HINT: &str = "install it with: apt-get install espeak-ng";

/// What to render and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Re-render everything, replacing unchanged files and recordings too.
    pub force: bool,
    /// Render this prompt id only (in every language it has).
    pub only: Option<String>,
    /// espeak-ng speaking rate, words per minute.
    pub speed_wpm: u32,
    /// The espeak-ng program to run.
    pub program: PathBuf,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            force: false,
            only: None,
            speed_wpm: DEFAULT_SPEED_WPM,
            program: PathBuf::from("espeak-ng"),
        }
    }
}

/// What a render did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderReport {
    /// Files written, in catalogue order.
    pub rendered: Vec<RenderedPrompt>,
    /// Files left as they were because their text had not changed.
    pub unchanged: usize,
    /// Files not made by this renderer (recordings), left untouched.
    pub kept_recordings: Vec<PathBuf>,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub id: String,
    pub language: Language,
    pub path: PathBuf,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `prompts.yaml` is missing or wrong: one `file:line:col: message` each.
    #[error("{}", lines(.0))]
    Catalogue(Vec<Diagnostic>),
    #[error("no prompt `{0}` in the catalogue")]
    UnknownPrompt(String),
    #[error(
        "prompt id `{0}` cannot be a file name: use letters, digits, `_`, `-` and `.`, not starting with `.`"
    )]
    BadPromptId(String),
    #[error("{language}/{id}: text is {chars} characters long, the limit is {MAX_TEXT_CHARS}")]
    TextTooLong {
        id: String,
        language: Language,
        chars: usize,
    },
    #[error("{program} not found: {INSTALL_HINT}")]
    SynthesiserMissing { program: String },
    #[error("{language}/{id}: {message}")]
    Synthesis {
        id: String,
        language: Language,
        message: String,
    },
    #[error(
        "{language}/{id}: the synthesiser produced no audio (empty text, or a script the voice cannot read?)"
    )]
    NoAudio { id: String, language: Language },
    #[error("{language}/{id}: {source}")]
    Resample {
        id: String,
        language: Language,
        source: ResampleError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}; delete it and render again with --force")]
    Manifest { path: PathBuf, message: String },
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    shown.join("\n")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynthesisError {
    #[error("{program} not found")]
    Missing { program: String },
    #[error("{0}")]
    Failed(String),
}

/// Turns text into speech. The renderer is written against this so that it
/// can be tested without a speech synthesiser installed.
pub trait Synthesiser {
    /// Names the voice and settings used for a language. It is hashed with
    /// the text: a different voice or pace re-renders the prompt.
    fn recipe(&self, language: Language) -> String;
    /// Speaks `text`, at whatever sample rate the synthesiser produces.
    fn synthesise(&self, text: &str, language: Language) -> Result<Pcm, SynthesisError>;
}

/// The espeak-ng command-line synthesiser. Text goes in on stdin (never
/// through a shell, never parsed as options); a WAV comes back on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Espeak {
    program: PathBuf,
    speed_wpm: u32,
}

impl Espeak {
    pub fn new(program: impl Into<PathBuf>, speed_wpm: u32) -> Espeak {
        Espeak {
            program: program.into(),
            speed_wpm,
        }
    }

    /// The espeak-ng voice for a language (British English for `en`).
    pub fn voice(language: Language) -> &'static str {
        match language {
            Language::Nb => "nb",
            Language::En => "en-gb",
            Language::Ar => "ar",
            Language::Pl => "pl",
            Language::Ru => "ru",
            Language::Ro => "ro",
            Language::Lt => "lt",
        }
    }

    /// Command-line arguments for one prompt in `language`.
    pub fn args(&self, language: Language) -> Vec<String> {
        vec![
            "-v".to_string(),
            Espeak::voice(language).to_string(),
            "-s".to_string(),
            self.speed_wpm.to_string(),
            "--stdout".to_string(),
            "--stdin".to_string(),
        ]
    }
}

impl Synthesiser for Espeak {
    fn recipe(&self, language: Language) -> String {
        format!("espeak-ng {}", self.args(language).join(" "))
    }

    fn synthesise(&self, text: &str, language: Language) -> Result<Pcm, SynthesisError> {
        let program = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(self.args(language))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => SynthesisError::Missing {
                    program: program.clone(),
                },
                _ => SynthesisError::Failed(format!("cannot run {program}: {e}")),
            })?;
        let stdin = child.stdin.take();
        // Written from a second thread: espeak may start writing audio before
        // it has read all the text, and both pipes must keep moving.
        let output = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> std::io::Result<()> {
                if let Some(mut stdin) = stdin {
                    stdin.write_all(text.as_bytes())?;
                }
                Ok(())
            });
            let output = child.wait_with_output();
            let written = writer.join();
            (output, written)
        });
        let (output, written) = output;
        let output =
            output.map_err(|e| SynthesisError::Failed(format!("waiting for {program}: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(SynthesisError::Failed(format!(
                "{program} failed ({}): {}",
                output.status,
                stderr.trim()
            )));
        }
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(SynthesisError::Failed(format!(
                    "writing text to {program}: {e}"
                )))
            }
            Err(_) => return Err(SynthesisError::Failed("text writer stopped".to_string())),
        }
        wav::parse(&output.stdout)
            .map_err(|message| SynthesisError::Failed(format!("{program} output: {message}")))
    }
}

/// Renders the catalogue in `dir` with espeak-ng.
pub fn render(dir: &Path, options: &RenderOptions) -> Result<RenderReport, RenderError> {
    let espeak = Espeak::new(options.program.clone(), options.speed_wpm);
    render_with(dir, options, &espeak)
}

/// Renders the catalogue in `dir` with any synthesiser. The manifest is saved
/// after every file, so an interrupted render loses no finished work.
pub fn render_with(
    dir: &Path,
    options: &RenderOptions,
    synthesiser: &dyn Synthesiser,
) -> Result<RenderReport, RenderError> {
    let catalogue = Catalogue::load(dir).map_err(RenderError::Catalogue)?;
    for id in catalogue.prompts.keys() {
        if !is_safe_id(id) {
            return Err(RenderError::BadPromptId(id.clone()));
        }
    }
    if let Some(only) = &options.only {
        if !catalogue.prompts.contains_key(only) {
            return Err(RenderError::UnknownPrompt(only.clone()));
        }
    }
    let manifest_path = dir.join(AUDIO_DIR).join(MANIFEST_FILE);
    let mut manifest = Manifest::load(&manifest_path)?;
    let mut report = RenderReport::default();

    for (id, texts) in &catalogue.prompts {
        if options.only.as_ref().is_some_and(|only| only != id) {
            continue;
        }
        for (&language, text) in texts {
            let chars = text.chars().count();
            if chars > MAX_TEXT_CHARS {
                return Err(RenderError::TextTooLong {
                    id: id.clone(),
                    language,
                    chars,
                });
            }
            let path = Catalogue::audio_path(dir, id, language);
            let key = manifest_key(id, language);
            let source = source_hash(&synthesiser.recipe(language), text);
            let current = read_optional(&path)?.map(|bytes| md5_hex(&bytes));
            match decide(
                manifest.entries.get(&key),
                current.as_deref(),
                &source,
                options.force,
            ) {
                Decision::Unchanged => report.unchanged += 1,
                Decision::KeepRecording => report.kept_recordings.push(path),
                Decision::Render => {
                    let (bytes, duration) = synthesise_prompt(synthesiser, id, language, text)?;
                    write_atomically(&path, &bytes)?;
                    manifest.entries.insert(
                        key,
                        ManifestEntry {
                            source,
                            audio: md5_hex(&bytes),
                        },
                    );
                    manifest.save(&manifest_path)?;
                    report.rendered.push(RenderedPrompt {
                        id: id.clone(),
                        language,
                        path,
                        duration,
                    });
                }
            }
        }
    }
    Ok(report)
}

/// Synthesises one text and returns the finished WAV file and its length.
fn synthesise_prompt(
    synthesiser: &dyn Synthesiser,
    id: &str,
    language: Language,
    text: &str,
) -> Result<(Vec<u8>, Duration), RenderError> {
    let pcm = synthesiser
        .synthesise(text, language)
        .map_err(|e| match e {
            SynthesisError::Missing { program } => RenderError::SynthesiserMissing { program },
            SynthesisError::Failed(message) => RenderError::Synthesis {
                id: id.to_string(),
                language,
                message,
            },
        })?;
    let mut samples = resample(&pcm.samples, pcm.sample_rate, OUTPUT_RATE).map_err(|source| {
        RenderError::Resample {
            id: id.to_string(),
            language,
            source,
        }
    })?;
    if !normalise_peak(&mut samples) {
        return Err(RenderError::NoAudio {
            id: id.to_string(),
            language,
        });
    }
    let speech = trim_silence(&samples);
    let duration = Duration::from_secs_f64(speech.len() as f64 / f64::from(OUTPUT_RATE));
    Ok((wav::encode_8k(speech), duration))
}

/// Ids become file names: no separators, no hidden or parent entries.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

// ---------------------------------------------------------------------------
// Manifest

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// By `<lang>/<id>`; a BTreeMap so the file is written in a stable order.
    entries: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    /// MD5 of the synthesiser recipe, the pipeline and the text.
    source: String,
    /// MD5 of the WAV file as written.
    audio: String,
}

impl Manifest {
    fn load(path: &Path) -> Result<Manifest, RenderError> {
        match read_optional(path)? {
            None => Ok(Manifest::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| RenderError::Manifest {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        }
    }

    fn save(&self, path: &Path) -> Result<(), RenderError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| RenderError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        text.push('\n');
        write_atomically(path, text.as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Render,
    Unchanged,
    KeepRecording,
}

/// Whether one file must be (re)rendered. `current_audio` is the MD5 of the
/// file on disk, if there is one.
fn decide(
    entry: Option<&ManifestEntry>,
    current_audio: Option<&str>,
    source: &str,
    force: bool,
) -> Decision {
    let Some(current_audio) = current_audio else {
        return Decision::Render;
    };
    if force {
        return Decision::Render;
    }
    match entry {
        Some(entry) if entry.audio == current_audio => {
            if entry.source == source {
                Decision::Unchanged
            } else {
                Decision::Render
            }
        }
        // Not what we wrote: someone recorded it.
        _ => Decision::KeepRecording,
    }
}

fn manifest_key(id: &str, language: Language) -> String {
    format!("{}/{id}", language.code())
}

fn source_hash(recipe: &str, text: &str) -> String {
    md5_hex(format!("{recipe}\n{PIPELINE}\n{text}").as_bytes())
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

// ---------------------------------------------------------------------------
// Files

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, RenderError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RenderError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes next to the target and renames, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RenderError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Io { path, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

// ---------------------------------------------------------------------------
// Level and silence

/// Scales audio so its peak sits at [`TARGET_PEAK`]. Returns false when there
/// is nothing audible to scale.
fn normalise_peak(samples: &mut [i16]) -> bool {
    let peak = samples
        .iter()
        .map(|s| i32::from(*s).abs())
        .max()
        .unwrap_or(0);
    // Below about -60 dBFS there is no speech, only dither or silence.
    if peak < 32 {
        return false;
    }
    let gain = TARGET_PEAK / f64::from(peak);
    for s in samples.iter_mut() {
        *s = clamp_i16(f64::from(*s) * gain);
    }
    true
}

/// Drops leading and trailing silence, keeping [`EDGE_SILENCE`] of it.
fn trim_silence(samples: &[i16]) -> &[i16] {
    let threshold = TARGET_PEAK * SILENCE_FRACTION;
    let loud = |s: &i16| f64::from(*s).abs() > threshold;
    let (Some(first), Some(last)) = (
        samples.iter().position(loud),
        samples.iter().rposition(loud),
    ) else {
        return samples;
    };
    let start = first.saturating_sub(EDGE_SILENCE);
    let end = last.saturating_add(1 + EDGE_SILENCE).min(samples.len());
    samples.get(start..end).unwrap_or(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testing::sine;
    use std::cell::RefCell;

    #[test]
    fn peak_is_normalised_and_silence_refused() {
        let mut quiet = vec![0, 1000, -2000, 500];
        assert!(normalise_peak(&mut quiet));
        assert_eq!(quiet[2], -(TARGET_PEAK.round() as i16));
        assert_eq!(quiet[1], (TARGET_PEAK / 2.0).round() as i16);
        let mut silence = vec![0, 3, -2, 0];
        assert!(!normalise_peak(&mut silence));
        assert!(!normalise_peak(&mut []));
    }

    #[test]
    fn silence_is_trimmed_to_a_short_margin() {
        let mut padded = vec![0i16; 3_000];
        padded.extend(sine(500.0, 8_000, 0.5, 20_000.0));
        padded.extend(vec![10i16; 3_000]); // faint noise counts as silence
        let speech = trim_silence(&padded);
        assert_eq!(speech.len(), 4_000 + 2 * EDGE_SILENCE - 1);
        assert!(speech[EDGE_SILENCE + 1] != 0);
        // Nothing to trim: unchanged; nothing loud at all: unchanged too.
        let tone = sine(500.0, 8_000, 0.1, 20_000.0);
        assert_eq!(trim_silence(&tone).len(), tone.len());
        assert_eq!(trim_silence(&[0, 0, 0]).len(), 3);
    }

    // --- espeak-ng command -------------------------------------------------

    #[test]
    fn espeak_arguments_name_voice_and_pace_and_read_text_from_stdin() {
        let espeak = Espeak::new("espeak-ng", 150);
        assert_eq!(
            espeak.args(Language::En),
            ["-v", "en-gb", "-s", "150", "--stdout", "--stdin"]
        );
        let voices: Vec<&str> = Language::ALL.iter().map(|l| Espeak::voice(*l)).collect();
        assert_eq!(voices, ["nb", "en-gb", "ar", "pl", "ru", "ro", "lt"]);
        // The recipe changes with voice and pace, so both re-render.
        assert_ne!(espeak.recipe(Language::Nb), espeak.recipe(Language::En));
        assert_ne!(
            espeak.recipe(Language::Nb),
            Espeak::new("espeak-ng", 160).recipe(Language::Nb)
        );
    }

    #[test]
    fn a_missing_espeak_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), &[("welcome", "en", "Welcome.")]);
        let options = RenderOptions {
            program: dir.path().join("no-such-espeak-ng"),
            ..RenderOptions::default()
        };
        let e = render(dir.path(), &options).unwrap_err();
        assert!(matches!(e, RenderError::SynthesiserMissing { .. }), "{e:?}");
        assert!(e.to_string().contains("apt-get install espeak-ng"), "{e}");
    }

    // --- Rendering with a fake synthesiser ---------------------------------

    /// Speaks a 500 Hz tone at 22.05 kHz, 10 ms per character.
    #[derive(Default)]
    struct FakeSynthesiser {
        calls: RefCell<Vec<(String, Language)>>,
        pace: u32,
    }

    impl Synthesiser for FakeSynthesiser {
        fn recipe(&self, language: Language) -> String {
            format!("fake {} {}", language.code(), self.pace)
        }
        fn synthesise(&self, text: &str, language: Language) -> Result<Pcm, SynthesisError> {
            self.calls.borrow_mut().push((text.to_string(), language));
            let seconds = text.chars().count() as f64 * 0.01;
            let amplitude = if text.contains("(silent)") {
                0.0
            } else {
                8000.0
            };
            Ok(Pcm {
                sample_rate: 22_050,
                samples: sine(500.0, 22_050, seconds, amplitude),
            })
        }
    }

    impl FakeSynthesiser {
        fn take_calls(&self) -> Vec<(String, Language)> {
            std::mem::take(&mut *self.calls.borrow_mut())
        }
    }

    fn write_catalogue(dir: &Path, entries: &[(&str, &str, &str)]) {
        let mut by_id: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (id, lang, text) in entries {
            by_id.entry(id).or_default().push((lang, text));
        }
        let mut yaml = String::from("prompts:\n");
        for (id, texts) in by_id {
            yaml.push_str(&format!("  {id}:\n"));
            for (lang, text) in texts {
                yaml.push_str(&format!("    {lang}: \"{text}\"\n"));
            }
        }
        std::fs::write(dir.join("prompts.yaml"), yaml).unwrap();
    }

    const SAMPLE: &[(&str, &str, &str)] = &[
        ("welcome", "nb", "Velkommen."),
        ("welcome", "en", "Welcome to the hotline."),
        ("welcome", "ar", "مرحبًا بكم."),
        ("goodbye", "en", "Goodbye."),
        ("number.1", "ru", "один"),
    ];

    fn options() -> RenderOptions {
        RenderOptions::default()
    }

    #[test]
    fn renders_every_text_to_an_8khz_wav_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        let synth = FakeSynthesiser::default();
        let report = render_with(dir.path(), &options(), &synth).unwrap();

        let done: Vec<String> = report
            .rendered
            .iter()
            .map(|r| format!("{}/{}", r.language, r.id))
            .collect();
        assert_eq!(
            done,
            [
                "en/goodbye",
                "ru/number.1",
                "nb/welcome",
                "en/welcome",
                "ar/welcome"
            ]
        );
        assert_eq!(report.unchanged, 0);
        assert_eq!(synth.take_calls().len(), 5);

        let welcome = &report.rendered[3];
        assert_eq!(welcome.path, dir.path().join("audio/en/welcome.wav"));
        // 23 characters at 10 ms each.
        assert!((welcome.duration.as_secs_f64() - 0.23).abs() < 0.001);
        let reader = hound::WavReader::open(&welcome.path).unwrap();
        assert_eq!(reader.spec().sample_rate, 8_000);
        assert_eq!(reader.spec().channels, 1);
        assert_eq!(reader.len(), 1_840);

        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.path().join("audio/manifest.json")).unwrap())
                .unwrap();
        let keys: Vec<&str> = manifest.entries.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "ar/welcome",
                "en/goodbye",
                "en/welcome",
                "nb/welcome",
                "ru/number.1"
            ]
        );
    }

    #[test]
    fn a_second_render_synthesises_nothing_and_changes_no_byte() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        let synth = FakeSynthesiser::default();
        render_with(dir.path(), &options(), &synth).unwrap();
        synth.take_calls();
        let before = std::fs::read(dir.path().join("audio/manifest.json")).unwrap();

        let report = render_with(dir.path(), &options(), &synth).unwrap();
        assert!(report.rendered.is_empty());
        assert_eq!(report.unchanged, 5);
        assert!(synth.take_calls().is_empty());
        let after = std::fs::read(dir.path().join("audio/manifest.json")).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn only_changed_texts_and_missing_files_are_rendered_again() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        let synth = FakeSynthesiser::default();
        render_with(dir.path(), &options(), &synth).unwrap();
        synth.take_calls();

        let mut changed = SAMPLE.to_vec();
        changed[3] = ("goodbye", "en", "Thank you for calling. Goodbye.");
        write_catalogue(dir.path(), &changed);
        std::fs::remove_file(dir.path().join("audio/nb/welcome.wav")).unwrap();

        let report = render_with(dir.path(), &options(), &synth).unwrap();
        let calls = synth.take_calls();
        assert_eq!(
            calls,
            [
                ("Thank you for calling. Goodbye.".to_string(), Language::En),
                ("Velkommen.".to_string(), Language::Nb),
            ]
        );
        assert_eq!(report.unchanged, 3);
    }

    #[test]
    fn a_new_voice_or_pace_renders_everything_again() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        render_with(dir.path(), &options(), &FakeSynthesiser::default()).unwrap();
        let slower = FakeSynthesiser {
            pace: 140,
            ..FakeSynthesiser::default()
        };
        let report = render_with(dir.path(), &options(), &slower).unwrap();
        assert_eq!(report.rendered.len(), 5);
    }

    #[test]
    fn force_renders_everything_and_only_renders_one_prompt() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        let synth = FakeSynthesiser::default();
        let only = RenderOptions {
            only: Some("welcome".to_string()),
            ..options()
        };
        let report = render_with(dir.path(), &only, &synth).unwrap();
        assert_eq!(report.rendered.len(), 3);
        assert!(report.rendered.iter().all(|r| r.id == "welcome"));
        assert!(!dir.path().join("audio/en/goodbye.wav").exists());

        render_with(dir.path(), &options(), &synth).unwrap();
        synth.take_calls();
        let force = RenderOptions {
            force: true,
            ..options()
        };
        let report = render_with(dir.path(), &force, &synth).unwrap();
        assert_eq!(report.rendered.len(), 5);
        assert_eq!(synth.take_calls().len(), 5);

        let missing = RenderOptions {
            only: Some("nope".to_string()),
            ..options()
        };
        let e = render_with(dir.path(), &missing, &synth).unwrap_err();
        assert!(matches!(e, RenderError::UnknownPrompt(id) if id == "nope"));
    }

    #[test]
    fn a_recording_that_replaced_a_rendered_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        let synth = FakeSynthesiser::default();
        render_with(dir.path(), &options(), &synth).unwrap();
        let recorded = wav::encode_8k(&[1, 2, 3, 4]);
        let path = dir.path().join("audio/en/goodbye.wav");
        std::fs::write(&path, &recorded).unwrap();
        // A recording with no manifest entry at all.
        let unlisted = dir.path().join("audio/en/closed.wav");
        std::fs::write(&unlisted, &recorded).unwrap();
        let mut more = SAMPLE.to_vec();
        more[3] = ("goodbye", "en", "Goodbye, and thank you.");
        more.push(("closed", "en", "We are closed."));
        write_catalogue(dir.path(), &more);
        synth.take_calls();

        let report = render_with(dir.path(), &options(), &synth).unwrap();
        assert_eq!(report.kept_recordings, [unlisted.clone(), path.clone()]);
        assert!(synth.take_calls().is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), recorded);

        let force = RenderOptions {
            force: true,
            ..options()
        };
        render_with(dir.path(), &force, &synth).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), recorded);
    }

    #[test]
    fn decisions() {
        let entry = ManifestEntry {
            source: "s1".to_string(),
            audio: "a1".to_string(),
        };
        use Decision::*;
        assert_eq!(decide(Some(&entry), None, "s1", false), Render);
        assert_eq!(decide(None, None, "s1", false), Render);
        assert_eq!(decide(Some(&entry), Some("a1"), "s1", false), Unchanged);
        assert_eq!(decide(Some(&entry), Some("a1"), "s2", false), Render);
        assert_eq!(decide(Some(&entry), Some("a2"), "s1", false), KeepRecording);
        assert_eq!(decide(None, Some("a1"), "s1", false), KeepRecording);
        assert_eq!(decide(Some(&entry), Some("a1"), "s1", true), Render);
        assert_eq!(decide(None, Some("a1"), "s1", true), Render);
    }

    #[test]
    fn unsafe_ids_silence_and_bad_manifests_are_clear_errors() {
        let synth = FakeSynthesiser::default();

        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), &[("../../escape", "en", "Hi.")]);
        let e = render_with(dir.path(), &options(), &synth).unwrap_err();
        assert!(matches!(e, RenderError::BadPromptId(_)), "{e:?}");
        assert!(!is_safe_id(".hidden") && !is_safe_id("") && !is_safe_id("a/b"));
        assert!(is_safe_id("minutes.one") && is_safe_id("number.20"));

        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), &[("quiet", "en", "(silent)")]);
        let e = render_with(dir.path(), &options(), &synth).unwrap_err();
        assert!(matches!(e, RenderError::NoAudio { .. }), "{e:?}");
        assert!(!dir.path().join("audio/en/quiet.wav").exists());

        let dir = tempfile::tempdir().unwrap();
        write_catalogue(dir.path(), SAMPLE);
        std::fs::create_dir_all(dir.path().join("audio")).unwrap();
        std::fs::write(dir.path().join("audio/manifest.json"), "{ not json").unwrap();
        let e = render_with(dir.path(), &options(), &synth).unwrap_err();
        assert!(matches!(e, RenderError::Manifest { .. }), "{e:?}");
        assert!(e.to_string().contains("--force"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let long = "a".repeat(MAX_TEXT_CHARS + 1);
        write_catalogue(dir.path(), &[("long", "en", &long)]);
        let e = render_with(dir.path(), &options(), &synth).unwrap_err();
        assert!(matches!(e, RenderError::TextTooLong { .. }), "{e:?}");
    }
}
