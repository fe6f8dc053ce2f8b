//! The prompt library: every prompt's audio decoded once at start, converted to
//! 8 kHz mono and pre-encoded to both G.711 laws, then shared by all calls.

use super::g711;
use super::{Codec, FRAME_BYTES, FRAME_DURATION, SAMPLE_RATE};
use crate::flow::Catalogue;
use crate::language::Language;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest prompt accepted (music on hold included): bounds memory per file.
pub const MAX_CLIP_SECONDS: u32 = 600;
/// Sample rates accepted in prompt files.
const MIN_INPUT_RATE: u32 = 4_000;
const MAX_INPUT_RATE: u32 = 384_000;

/// One prompt, pre-encoded once for both codecs. 160 bytes per 20 ms frame;
/// both buffers always hold whole frames.
#[derive(Debug)]
pub struct Clip {
    pub pcmu: Box<[u8]>,
    pub pcma: Box<[u8]>,
}

impl Clip {
    /// Encodes 8 kHz mono samples, padding the last frame with silence.
    pub fn from_samples(samples: &[i16]) -> Clip {
        let frames = samples.len().div_ceil(FRAME_BYTES);
        let mut pcmu = vec![g711::ULAW_SILENCE; frames * FRAME_BYTES];
        let mut pcma = vec![g711::ALAW_SILENCE; frames * FRAME_BYTES];
        for ((u, a), &s) in pcmu.iter_mut().zip(pcma.iter_mut()).zip(samples) {
            *u = g711::linear_to_ulaw(s);
            *a = g711::linear_to_alaw(s);
        }
        Clip {
            pcmu: pcmu.into_boxed_slice(),
            pcma: pcma.into_boxed_slice(),
        }
    }

    /// Number of 20 ms frames.
    pub fn frames(&self) -> usize {
        self.pcmu.len().min(self.pcma.len()) / FRAME_BYTES
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        FRAME_DURATION.saturating_mul(u32::try_from(self.frames()).unwrap_or(u32::MAX))
    }

    /// Frame `index` in a codec; `None` past the end.
    pub fn frame(&self, codec: Codec, index: usize) -> Option<&[u8; FRAME_BYTES]> {
        let data = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        let start = index.checked_mul(FRAME_BYTES)?;
        data.get(start..start.checked_add(FRAME_BYTES)?)?
            .try_into()
            .ok()
    }
}

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

/// A prompt file exists but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; save it as a WAV file (8 kHz 16-bit mono PCM is best) or re-render it with `hotline prompts render`", path.display())]
pub struct PromptError {
    pub path: PathBuf,
    pub reason: String,
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
                let samples = decode_wav_file(&path).map_err(|reason| PromptError {
                    path: path.clone(),
                    reason,
                })?;
                library.insert(id, language, Arc::new(Clip::from_samples(&samples)));
            }
        }
        library.music = super::music::load_file(dir)?;
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
            None => super::music::generated(),
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

pub(crate) fn decode_wav_file(path: &Path) -> Result<Vec<i16>, String> {
    let reader = hound::WavReader::open(path).map_err(|e| e.to_string())?;
    decode_wav(reader)
}

/// Decodes any PCM/float WAV to 8 kHz mono 16-bit samples.
pub fn decode_wav<R: Read>(mut reader: hound::WavReader<R>) -> Result<Vec<i16>, String> {
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err("the file declares zero channels".into());
    }
    if !(MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(&spec.sample_rate) {
        return Err(format!("unsupported sample rate {} Hz", spec.sample_rate));
    }
    let frames = reader.duration();
    if u64::from(frames) > u64::from(spec.sample_rate) * u64::from(MAX_CLIP_SECONDS) {
        return Err(format!("longer than {MAX_CLIP_SECONDS} seconds"));
    }
    if frames == 0 {
        return Err("the file contains no audio".into());
    }
    let channels = usize::from(spec.channels);
    let mut mono = Vec::with_capacity(frames as usize);
    let mut sum = 0.0f32;
    let mut in_frame = 0usize;
    let mut push = |value: f32| {
        sum += value;
        in_frame += 1;
        if in_frame == channels {
            mono.push(sum / channels as f32);
            sum = 0.0;
            in_frame = 0;
        }
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for sample in reader.samples::<f32>() {
                let v = sample.map_err(|e| e.to_string())?;
                push(if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                });
            }
        }
        (hound::SampleFormat::Int, bits @ 8..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for sample in reader.samples::<i32>() {
                push(sample.map_err(|e| e.to_string())? as f32 * scale);
            }
        }
        (format, bits) => {
            return Err(format!(
                "unsupported sample format ({bits}-bit {})",
                match format {
                    hound::SampleFormat::Float => "float",
                    hound::SampleFormat::Int => "integer",
                }
            ))
        }
    }
    let audio = resample(&mono, spec.sample_rate, SAMPLE_RATE);
    Ok(audio
        .iter()
        .map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Zero crossings of the sinc on each side: sets the steepness of the filter.
const ZERO_CROSSINGS: f64 = 16.0;
/// Passband edge as a fraction of the lower Nyquist frequency.
const PASSBAND: f64 = 0.92;
/// Kernel table resolution (points per input sample).
const TABLE_STEPS: f64 = 512.0;

/// Band-limited resampling with a Blackman-windowed sinc low-pass, so that
/// content above the new Nyquist frequency is removed instead of aliasing.
pub fn resample(input: &[f32], from_rate: u32, to_rate: u32) -> Vec<f32> {
    if from_rate == to_rate || input.is_empty() || from_rate == 0 || to_rate == 0 {
        return input.to_vec();
    }
    let ratio = f64::from(to_rate) / f64::from(from_rate);
    // Cut-off in cycles per input sample.
    let cutoff = 0.5 * ratio.min(1.0) * PASSBAND;
    let half_width = ZERO_CROSSINGS / (2.0 * cutoff);
    let table_len = (half_width * TABLE_STEPS).ceil() as usize + 2;
    let table: Vec<f64> = (0..table_len)
        .map(|i| {
            let t = i as f64 / TABLE_STEPS;
            if t > half_width {
                return 0.0;
            }
            let x = 2.0 * cutoff * t;
            let sinc = if x == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
            };
            let w = t / half_width;
            let window = 0.42
                + 0.5 * (std::f64::consts::PI * w).cos()
                + 0.08 * (2.0 * std::f64::consts::PI * w).cos();
            2.0 * cutoff * sinc * window
        })
        .collect();
    let kernel = |t: f64| -> f64 {
        let position = t.abs() * TABLE_STEPS;
        let index = position as usize;
        let fraction = position - index as f64;
        match (table.get(index), table.get(index + 1)) {
            (Some(a), Some(b)) => a + (b - a) * fraction,
            _ => 0.0,
        }
    };
    let out_len = (input.len() as f64 * ratio).ceil() as usize;
    let last = input.len() as i64 - 1;
    (0..out_len)
        .map(|n| {
            let center = n as f64 / ratio;
            let first = ((center - half_width).ceil() as i64).max(0);
            let end = ((center + half_width).floor() as i64).min(last);
            let mut acc = 0.0f64;
            for i in first..=end {
                if let Some(&x) = input.get(i as usize) {
                    acc += f64::from(x) * kernel(i as f64 - center);
                }
            }
            acc as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sine(rate: u32, freq: f64, seconds: f64, amplitude: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    fn rms(samples: &[f32]) -> f64 {
        // Skip the filter's edges.
        let inner = &samples[samples.len() / 10..samples.len() * 9 / 10];
        (inner.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / inner.len() as f64).sqrt()
    }

    #[test]
    fn resampling_keeps_speech_band_and_removes_what_would_alias() {
        for rate in [16_000, 22_050, 44_100, 48_000] {
            let passed = resample(&sine(rate, 1000.0, 0.5, 0.5), rate, 8000);
            assert_eq!(passed.len(), 4000, "{rate}");
            let level = rms(&passed) / (0.5 / 2f64.sqrt());
            assert!((level - 1.0).abs() < 0.02, "{rate}: 1 kHz level {level}");
            let stopped = resample(&sine(rate, 6000.0, 0.5, 0.5), rate, 8000);
            assert!(
                rms(&stopped) < 0.005,
                "{rate}: 6 kHz leaks {}",
                rms(&stopped)
            );
        }
        // Upsampling keeps the tone as well.
        let up = resample(&sine(6000, 500.0, 0.5, 0.5), 6000, 8000);
        assert!((rms(&up) / (0.5 / 2f64.sqrt()) - 1.0).abs() < 0.02);
    }

    #[test]
    fn clip_is_whole_frames_padded_with_silence() {
        let clip = Clip::from_samples(&[1000; 161]);
        assert_eq!(clip.frames(), 2);
        assert_eq!(clip.duration(), Duration::from_millis(40));
        let second = clip.frame(Codec::Pcmu, 1).expect("frame");
        assert_eq!(second[0], g711::linear_to_ulaw(1000));
        assert!(second[1..].iter().all(|&b| b == g711::ULAW_SILENCE));
        let second = clip.frame(Codec::Pcma, 1).expect("frame");
        assert!(second[1..].iter().all(|&b| b == g711::ALAW_SILENCE));
        assert!(clip.frame(Codec::Pcmu, 2).is_none());
        assert_eq!(Clip::from_samples(&[]).frames(), 0);
    }

    fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[f32]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut writer = hound::WavWriter::create(path, spec).expect("create");
        for &s in samples {
            for _ in 0..spec.channels {
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => writer.write_sample(s).expect("w"),
                    (_, 8) => writer.write_sample((s * 127.0) as i8).expect("w"),
                    (_, 16) => writer.write_sample((s * 32767.0) as i16).expect("w"),
                    (_, bits) => writer
                        .write_sample((f64::from(s) * ((1i64 << (bits - 1)) - 1) as f64) as i32)
                        .expect("w"),
                }
            }
        }
        writer.finalize().expect("finalize");
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
        let tone8k = sine(8000, 440.0, 0.1, 0.5);
        let tone48k = sine(48000, 440.0, 0.1, 0.5);
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
