//! Music on hold: `audio/music/hold.wav` in the flows directory when an
//! operator provides one, otherwise a piece generated here once, at first use (so
//! the hotline never needs a licence for it). Either way it is encoded once and
//! shared by every waiting caller.
//!
//! The generated piece: a soft arpeggio over a slow chord progression
//! (C, Am, F, G, C, Am, Dm, G; 3 s each, 24 s in all) with a quiet pad under
//! it, pitched where a telephone carries sound well, and made to loop without
//! a seam (notes still ringing at the end continue at the start).

use super::clip::{Clip, PromptError};
use super::SAMPLE_RATE;
use std::f32::consts::TAU;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where an operator's own hold music goes, relative to the flows directory.
pub const HOLD_MUSIC_FILE: &str = "audio/music/hold.wav";

const CHORD_SECONDS: f32 = 3.0;
const NOTE_SECONDS: f32 = 0.25;
/// How long one plucked note rings.
const RING_SECONDS: f32 = 0.9;
/// Arpeggio notes (MIDI numbers) of each chord, from low to high.
const CHORDS: [[u8; 4]; 8] = [
    [72, 76, 79, 84], // C
    [69, 72, 76, 81], // Am
    [65, 69, 72, 77], // F
    [67, 71, 74, 79], // G
    [72, 76, 79, 84], // C
    [69, 72, 76, 81], // Am
    [62, 65, 69, 74], // Dm
    [67, 71, 74, 79], // G
];
/// Up and down the chord.
const PATTERN: [usize; 6] = [0, 1, 2, 3, 2, 1];
/// Loudest sample of the piece: about -10 dBFS, gentle on a phone.
const PEAK: f32 = 0.3;

/// The hold music for a flows directory: its `audio/music/hold.wav` if there is
/// one, else the generated piece.
pub fn load(dir: &Path) -> Result<Arc<Clip>, PromptError> {
    Ok(load_file(dir)?.unwrap_or_else(generated))
}

/// The directory's own `audio/music/hold.wav`, if there is one.
pub fn load_file(dir: &Path) -> Result<Option<Arc<Clip>>, PromptError> {
    let path: PathBuf = dir.join(HOLD_MUSIC_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(Arc::new(Clip::from_wav_file(&path)?)))
}

/// The generated piece, made and encoded once per process, when first asked
/// for (about 0.1 s of CPU), so that a process that plays no music never pays
/// for it.
pub fn generated() -> Arc<Clip> {
    static CLIP: OnceLock<Arc<Clip>> = OnceLock::new();
    Arc::clone(CLIP.get_or_init(|| Arc::new(Clip::from_samples(&compose()))))
}

fn frequency(midi: u8) -> f32 {
    440.0 * 2f32.powf((f32::from(midi) - 69.0) / 12.0)
}

/// A soft plucked tone: fundamental with a little second and third harmonic,
/// quick attack, exponential decay.
fn pluck(t: f32, hz: f32) -> f32 {
    let attack = (t / 0.01).min(1.0);
    let decay = (-t / 0.3).exp();
    let phase = TAU * hz * t;
    attack * decay * (phase.sin() + 0.3 * (2.0 * phase).sin() + 0.08 * (3.0 * phase).sin())
}

/// 8 kHz samples of the generated piece.
fn compose() -> Vec<i16> {
    let rate = SAMPLE_RATE as f32;
    let chord_len = (CHORD_SECONDS * rate) as usize;
    let note_len = (NOTE_SECONDS * rate) as usize;
    let ring_len = (RING_SECONDS * rate) as usize;
    let total = chord_len * CHORDS.len();
    let mut mix = vec![0f32; total];

    for (c, chord) in CHORDS.iter().enumerate() {
        let chord_start = c * chord_len;
        // The arpeggio; tails past the end wrap to the start, so the loop is seamless.
        for n in 0..chord_len / note_len {
            let Some(&midi) = PATTERN.get(n % PATTERN.len()).and_then(|&i| chord.get(i)) else {
                continue;
            };
            let hz = frequency(midi);
            let accent = if n % PATTERN.len() == 0 { 1.0 } else { 0.75 };
            let start = chord_start + n * note_len;
            for k in 0..ring_len {
                if let Some(sample) = mix.get_mut((start + k) % total) {
                    *sample += accent * pluck(k as f32 / rate, hz);
                }
            }
        }
        // A quiet pad of the chord's three lowest notes an octave down, faded
        // in and out over 0.4 s so that chord changes do not click.
        let fade = 0.4 * rate;
        for k in 0..chord_len {
            let edge = (k as f32).min((chord_len - k) as f32);
            let envelope = (edge / fade).min(1.0);
            let envelope = envelope * envelope * (3.0 - 2.0 * envelope);
            let t = (chord_start + k) as f32 / rate;
            let pad: f32 = chord
                .iter()
                .take(3)
                .map(|&midi| {
                    let phase = TAU * frequency(midi - 12) * t;
                    phase.sin() + 0.4 * (2.0 * phase).sin()
                })
                .sum();
            if let Some(sample) = mix.get_mut(chord_start + k) {
                *sample += 0.12 * envelope * pad;
            }
        }
    }

    let peak = mix
        .iter()
        .fold(0f32, |m, s| m.max(s.abs()))
        .max(f32::EPSILON);
    let gain = PEAK * 32767.0 / peak;
    mix.iter()
        .map(|&s| (s * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{g711, Codec};

    #[test]
    fn generated_piece_is_24_seconds_moderate_and_loops_smoothly() {
        let samples = compose();
        assert_eq!(samples.len(), 24 * 8000);
        let peak = samples
            .iter()
            .map(|s| i32::from(*s).abs())
            .max()
            .unwrap_or(0);
        assert!((9000..=10_000).contains(&peak), "peak {peak}");
        let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>()
            / samples.len() as f64)
            .sqrt();
        assert!(rms > 1000.0, "audible: rms {rms}");
        // No click where the loop joins: the step is like any other step.
        let step = |a: i16, b: i16| (i32::from(a) - i32::from(b)).abs();
        let largest_step = samples
            .windows(2)
            .map(|w| step(w[0], w[1]))
            .max()
            .unwrap_or(0);
        let seam = step(samples[samples.len() - 1], samples[0]);
        assert!(seam <= largest_step, "seam {seam} vs {largest_step}");

        let clip = generated();
        assert_eq!(clip.frames(), 1200);
        assert!(Arc::ptr_eq(&clip, &generated()), "made once");
        let first = clip.frame(Codec::Pcmu, 0).expect("frame");
        assert_eq!(g711::ulaw_to_linear(first[0]).signum(), samples[0].signum());
    }

    #[test]
    fn an_operators_file_replaces_it_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Arc::ptr_eq(
            &load(dir.path()).expect("default"),
            &generated()
        ));
        let path = dir.path().join(HOLD_MUSIC_FILE);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).expect("wav");
        for k in 0..1600 {
            writer
                .write_sample(((k % 40) * 100) as i16)
                .expect("sample");
        }
        writer.finalize().expect("finalize");
        assert_eq!(load(dir.path()).expect("loads").frames(), 10);
        std::fs::write(&path, b"RIFF nonsense").expect("write");
        let err = load(dir.path()).expect_err("broken file");
        assert!(err.to_string().contains("hold.wav"), "{err}");
    }
}
