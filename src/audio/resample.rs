//! Sample-rate conversion, for prompt files recorded at any common rate and
//! for the speech synthesiser's output: a Blackman-windowed sinc low-pass
//! (band-limited interpolation), so that everything above the cut-off is
//! removed before it can alias.

use super::clamp_i16;

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
    use crate::audio::testing::sine;

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

    fn sine_f(rate: u32, freq: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
        sine(freq, rate, seconds, amplitude * 32767.0)
    }

    fn rms_f(samples: &[i16]) -> f64 {
        rms(samples) / 32767.0
    }

    #[test]
    fn resampling_keeps_speech_band_and_removes_what_would_alias() {
        for rate in [16_000, 22_050, 44_100, 48_000] {
            let passed = resample(&sine_f(rate, 1000.0, 0.5, 0.5), rate, 8000).unwrap();
            assert_eq!(passed.len(), 4000, "{rate}");
            let level = rms_f(&passed) / (0.5 / 2f64.sqrt());
            assert!((level - 1.0).abs() < 0.02, "{rate}: 1 kHz level {level}");
            let stopped = resample(&sine_f(rate, 6000.0, 0.5, 0.5), rate, 8000).unwrap();
            assert!(
                rms_f(&stopped) < 0.005,
                "{rate}: 6 kHz leaks {}",
                rms_f(&stopped)
            );
        }
        // Upsampling keeps the tone as well.
        let up = resample(&sine_f(6000, 500.0, 0.5, 0.5), 6000, 8000).unwrap();
        assert!((rms_f(&up) / (0.5 / 2f64.sqrt()) - 1.0).abs() < 0.02);
    }
}
