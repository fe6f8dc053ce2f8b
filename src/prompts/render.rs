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

/// Mono 16-bit audio at some rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
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
        parse_wav(&output.stdout)
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
    Ok((encode_wav(speech), duration))
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
// WAV

/// An 8 kHz 16-bit mono WAV file.
fn encode_wav(samples: &[i16]) -> Vec<u8> {
    let data_len = samples.len().saturating_mul(2);
    let mut out = Vec::with_capacity(44 + data_len);
    let riff_len = u32::try_from(36 + data_len).unwrap_or(u32::MAX);
    let data_len = u32::try_from(data_len).unwrap_or(u32::MAX);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&OUTPUT_RATE.to_le_bytes());
    out.extend_from_slice(&(OUTPUT_RATE * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Reads 16-bit PCM WAV bytes, downmixing to mono. Tolerates the streaming
/// header espeak-ng writes to a pipe, whose sizes are placeholders: a data
/// chunk simply ends where the bytes do.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm, String> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF/WAVE file".to_string());
    }
    let mut format: Option<(u16, u32)> = None;
    let mut pos = 12usize;
    while let Some(header) = bytes.get(pos..pos.saturating_add(8)) {
        let (id, size) = header.split_at(4);
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let start = pos + 8;
        let end = start.saturating_add(size).min(bytes.len());
        let body = bytes.get(start..end).unwrap_or_default();
        match id {
            b"fmt " => {
                let field = |at: usize| -> Result<u16, String> {
                    body.get(at..at + 2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .ok_or_else(|| "fmt chunk too short".to_string())
                };
                let (tag, channels, bits) = (field(0)?, field(2)?, field(14)?);
                let rate = u32::from(field(4)?) | (u32::from(field(6)?) << 16);
                if tag != 1 || bits != 16 {
                    return Err(format!(
                        "expected 16-bit PCM, found format {tag} with {bits} bits per sample"
                    ));
                }
                if channels == 0 || rate == 0 {
                    return Err("no channels or a zero sample rate".to_string());
                }
                format = Some((channels, rate));
            }
            b"data" => {
                let (channels, sample_rate) =
                    format.ok_or_else(|| "data chunk before fmt chunk".to_string())?;
                let frame = usize::from(channels) * 2;
                let samples = body
                    .chunks_exact(frame)
                    .map(|f| {
                        let sum: i32 = f
                            .chunks_exact(2)
                            .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                            .sum();
                        (sum / i32::from(channels)) as i16
                    })
                    .collect();
                return Ok(Pcm {
                    sample_rate,
                    samples,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = start.saturating_add(size).saturating_add(size & 1);
    }
    Err("no data chunk".to_string())
}

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

fn clamp_i16(x: f64) -> i16 {
    x.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

// ---------------------------------------------------------------------------
// Resampling

/// Widest rate ratio supported: `to / gcd(from, to)` phases of the filter are
/// tabulated, so this bounds the table.
const MAX_PHASES: u64 = 4_096;
/// Largest filter table, in coefficients.
const MAX_TABLE: u64 = 4 << 20;
/// Cut-off as a fraction of the lower of the two rates: 3.44 kHz at 8 kHz,
/// just above the telephone band (300-3400 Hz).
const CUTOFF_FRACTION: f64 = 0.43;
/// Zero crossings of the sinc on each side of the centre. With the Blackman
/// window this gives a transition band of about 0.26 x the cut-off (3.0 to
/// 3.9 kHz at 8 kHz) and about 74 dB of stop-band attenuation.
const ZERO_CROSSINGS: f64 = 21.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    #[error("sample rate must not be zero")]
    ZeroRate,
    #[error("cannot resample from {from} Hz to {to} Hz: the ratio is too fine")]
    UnsupportedRatio { from: u32, to: u32 },
}

/// Converts between sample rates with a Blackman-windowed sinc low-pass
/// (band-limited interpolation): everything above the cut-off is removed
/// before it can alias. The output has `ceil(len * to / from)` samples.
pub fn resample(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    if from == 0 || to == 0 {
        return Err(ResampleError::ZeroRate);
    }
    if from == to {
        return Ok(input.to_vec());
    }
    let g = gcd(u64::from(from), u64::from(to));
    let up = u64::from(to) / g; // output samples per `down` input samples
    let down = u64::from(from) / g;
    let cutoff = CUTOFF_FRACTION * f64::from(from.min(to)) / f64::from(from); // cycles per input sample
    let half = (ZERO_CROSSINGS / (2.0 * cutoff)).ceil() as u64;
    let taps = 2 * half;
    if up > MAX_PHASES || up.saturating_mul(taps) > MAX_TABLE {
        return Err(ResampleError::UnsupportedRatio { from, to });
    }
    let table = filter_table(up, half, cutoff);

    let len = input.len() as u64;
    let out_len = (len * up).div_ceil(down);
    let mut out = Vec::with_capacity(out_len as usize);
    for n in 0..out_len {
        let position = n * down;
        let base = position / up;
        let phase = (position % up) as usize;
        let coefficients = table
            .get(phase * taps as usize..(phase + 1) * taps as usize)
            .unwrap_or_default();
        // Tap j reads input[base + 1 - half + j].
        let first = base as i64 + 1 - half as i64;
        let mut acc = 0.0f64;
        for (j, c) in coefficients.iter().enumerate() {
            let index = first + j as i64;
            if let Some(x) = usize::try_from(index).ok().and_then(|i| input.get(i)) {
                acc += f64::from(*x) * c;
            }
        }
        out.push(clamp_i16(acc));
    }
    Ok(out)
}

/// Filter coefficients for each fractional phase, each phase scaled to unit
/// gain at 0 Hz.
fn filter_table(up: u64, half: u64, cutoff: f64) -> Vec<f64> {
    let taps = 2 * half;
    let mut table = Vec::with_capacity((up * taps) as usize);
    for phase in 0..up {
        let frac = phase as f64 / up as f64;
        let start = table.len();
        for j in 0..taps {
            // Distance from the output instant to input sample j of the window.
            let d = frac + half as f64 - 1.0 - j as f64;
            table.push(windowed_sinc(d, cutoff, half as f64));
        }
        let sum: f64 = table.get(start..).unwrap_or_default().iter().sum();
        if sum.abs() > f64::EPSILON {
            for c in table.iter_mut().skip(start) {
                *c /= sum;
            }
        }
    }
    table
}

fn windowed_sinc(d: f64, cutoff: f64, half: f64) -> f64 {
    use std::f64::consts::PI;
    if d.abs() >= half {
        return 0.0;
    }
    let x = 2.0 * cutoff * d;
    let sinc = if x.abs() < 1e-12 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    };
    let w = d / half; // -1..1
    let blackman = 0.42 + 0.5 * (PI * w).cos() + 0.08 * (2.0 * PI * w).cos();
    2.0 * cutoff * sinc * blackman
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    // --- Resampler ---------------------------------------------------------

    fn sine(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    /// Amplitude of the `freq` component, measured away from the edges.
    fn amplitude_at(samples: &[i16], rate: u32, freq: f64) -> f64 {
        let body = &samples[samples.len() / 10..samples.len() * 9 / 10];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, s) in body.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate);
            re += f64::from(*s) * phase.cos();
            im += f64::from(*s) * phase.sin();
        }
        2.0 * (re * re + im * im).sqrt() / body.len() as f64
    }

    fn rms(samples: &[i16]) -> f64 {
        let body = &samples[samples.len() / 10..samples.len() * 9 / 10];
        (body.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / body.len() as f64).sqrt()
    }

    fn rising_zero_crossings(samples: &[i16]) -> usize {
        samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
    }

    #[test]
    fn a_1khz_tone_stays_1khz_at_full_level() {
        let out = resample(&sine(1000.0, 22_050, 1.0, 10_000.0), 22_050, 8_000).unwrap();
        assert_eq!(out.len(), 8_000);
        let crossings = rising_zero_crossings(&out);
        assert!((999..=1001).contains(&crossings), "{crossings} cycles");
        let a = amplitude_at(&out, 8_000, 1000.0);
        assert!((a - 10_000.0).abs() < 100.0, "amplitude {a}");
        // Nothing else: the tone carries all the energy.
        assert!((rms(&out) - 10_000.0 / 2f64.sqrt()).abs() < 100.0);
    }

    #[test]
    fn the_telephone_band_passes() {
        for freq in [300.0, 2000.0, 3000.0] {
            let out = resample(&sine(freq, 22_050, 1.0, 10_000.0), 22_050, 8_000).unwrap();
            let a = amplitude_at(&out, 8_000, freq);
            assert!(a > 8_900.0, "{freq} Hz came out at {a}"); // within 1 dB
        }
    }

    #[test]
    fn components_at_and_above_3_9khz_are_removed() {
        // Near the edge: strongly attenuated.
        let edge = resample(&sine(3_950.0, 22_050, 1.0, 10_000.0), 22_050, 8_000).unwrap();
        assert!(rms(&edge) < 10_000.0 * 0.05, "3.95 kHz rms {}", rms(&edge));
        // Above the new Nyquist frequency these would alias to 3.5, 2 and
        // 0.5 kHz: nothing of them may remain.
        for freq in [4_500.0, 6_000.0, 7_500.0, 10_000.0] {
            let out = resample(&sine(freq, 22_050, 1.0, 10_000.0), 22_050, 8_000).unwrap();
            assert!(rms(&out) < 10.0, "{freq} Hz left rms {}", rms(&out));
        }
    }

    #[test]
    fn output_length_follows_the_rate_ratio() {
        let r = |n: usize, from, to| resample(&vec![0; n], from, to).unwrap().len();
        assert_eq!(r(0, 22_050, 8_000), 0);
        assert_eq!(r(1, 22_050, 8_000), 1);
        assert_eq!(r(441, 22_050, 8_000), 160);
        assert_eq!(r(442, 22_050, 8_000), 161);
        assert_eq!(r(48_000, 48_000, 8_000), 8_000);
        assert_eq!(r(44_100, 44_100, 8_000), 8_000);
        assert_eq!(r(8_000, 16_000, 8_000), 4_000);
        assert_eq!(r(100, 8_000, 8_000), 100);
    }

    #[test]
    fn other_source_rates_work_too() {
        for from in [16_000, 44_100, 48_000] {
            let out = resample(&sine(1000.0, from, 0.5, 10_000.0), from, 8_000).unwrap();
            let a = amplitude_at(&out, 8_000, 1000.0);
            assert!((a - 10_000.0).abs() < 100.0, "{from} Hz: {a}");
        }
    }

    #[test]
    fn full_scale_input_does_not_wrap() {
        let square: Vec<i16> = (0..22_050)
            .map(|i| {
                if (i / 50) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let out = resample(&square, 22_050, 8_000).unwrap();
        // Gibbs overshoot is clipped, never wrapped to the other sign.
        for w in out.windows(2) {
            assert!((i32::from(w[0]) - i32::from(w[1])).abs() < 60_000);
        }
    }

    #[test]
    fn bad_rates_are_errors() {
        assert_eq!(resample(&[1], 0, 8_000), Err(ResampleError::ZeroRate));
        assert_eq!(resample(&[1], 8_000, 0), Err(ResampleError::ZeroRate));
        assert!(matches!(
            resample(&[1], 22_051, 8_000),
            Err(ResampleError::UnsupportedRatio { .. })
        ));
    }

    // --- WAV ---------------------------------------------------------------

    #[test]
    fn written_wav_is_8khz_16bit_mono_and_reads_back() {
        let bytes = encode_wav(&[0, 1, -1, i16::MAX, i16::MIN]);
        let reader = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8_000, 16)
        );
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let pcm = parse_wav(&bytes).unwrap();
        assert_eq!(pcm.sample_rate, 8_000);
        assert_eq!(pcm.samples, [0, 1, -1, i16::MAX, i16::MIN]);
    }

    #[test]
    fn reads_the_streaming_header_espeak_writes_to_a_pipe() {
        let mut bytes = encode_wav(&[5, -5, 7]);
        // espeak-ng --stdout: placeholder sizes, 22.05 kHz.
        bytes[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        bytes[24..28].copy_from_slice(&22_050u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        let pcm = parse_wav(&bytes).unwrap();
        assert_eq!(pcm.sample_rate, 22_050);
        assert_eq!(pcm.samples, [5, -5, 7]);
    }

    #[test]
    fn stereo_is_downmixed_and_odd_chunks_are_skipped() {
        let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
        bytes.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd size, padded
        bytes.extend_from_slice(b"fmt \x10\0\0\0");
        bytes.extend_from_slice(&[1, 0, 2, 0]); // PCM, 2 channels
        bytes.extend_from_slice(&16_000u32.to_le_bytes());
        bytes.extend_from_slice(&64_000u32.to_le_bytes());
        bytes.extend_from_slice(&[4, 0, 16, 0]);
        bytes.extend_from_slice(b"data\x08\0\0\0");
        for s in [100i16, 300, -100, -300] {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let pcm = parse_wav(&bytes).unwrap();
        assert_eq!(pcm.sample_rate, 16_000);
        assert_eq!(pcm.samples, [200, -200]);
    }

    #[test]
    fn malformed_wavs_are_errors_not_panics() {
        let good = encode_wav(&[1, 2, 3]);
        for cut in 0..good.len() {
            let _ = parse_wav(&good[..cut]);
        }
        assert!(parse_wav(b"").is_err());
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        let mut eight_bit = good.clone();
        eight_bit[34] = 8;
        assert!(parse_wav(&eight_bit).is_err());
        let mut float = good;
        float[20] = 3;
        assert!(parse_wav(&float).is_err());
    }

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
        let recorded = encode_wav(&[1, 2, 3, 4]);
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
