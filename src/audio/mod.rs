//! Audio files and sample rates, shared by the prompt library and hold music
//! (`media`), `prompts render` and `flows simulate`: one WAV reader and
//! writer, one resampler.

pub mod resample;
pub mod wav;

pub use resample::{resample, ResampleError};
pub use wav::Pcm;

/// Rounds and saturates a sample to 16 bits: overshoot is clipped, never
/// wrapped to the other sign.
pub fn clamp_i16(x: f64) -> i16 {
    x.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// Test signals and files, for the tests of every module that handles audio.
#[cfg(test)]
pub mod testing {
    /// A sine tone at 16-bit scale.
    pub fn sine(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
        sine_f32(freq, rate, seconds, amplitude)
            .iter()
            .map(|&v| f64::from(v).round() as i16)
            .collect()
    }

    /// A sine tone as floats (1.0 is full scale for WAV files).
    pub fn sine_f32(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as f32
            })
            .collect()
    }

    /// A WAV file as another program (hound) writes it: `samples` (1.0 is
    /// full scale) in every channel.
    pub fn foreign_wav(spec: hound::WavSpec, samples: &[f32]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
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
        cursor.into_inner()
    }
}
