//! G.711 (ITU-T G.711) μ-law and A-law, written here so the probe does not
//! trust the code it measures. Decoding goes through 256-entry tables built
//! once, so classifying a frame costs no allocation.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Linear 16-bit value of a μ-law byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    let value = if u & 0x80 != 0 { -magnitude } else { magnitude };
    // |value| <= 32124, always within i16.
    value as i16
}

/// Linear 16-bit value of an A-law byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    let value = if a & 0x80 != 0 { magnitude } else { -magnitude };
    value as i16
}

/// μ-law byte for a linear sample (used by the synthetic sender).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    value = value.min(ULAW_CLIP) + ULAW_BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && value & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (value >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decode tables for both laws, built once.
pub struct Tables {
    pub ulaw: [i16; 256],
    pub alaw: [i16; 256],
}

impl Tables {
    pub fn new() -> Tables {
        let mut ulaw = [0i16; 256];
        let mut alaw = [0i16; 256];
        for (byte, (u, a)) in (0u8..=255).zip(ulaw.iter_mut().zip(alaw.iter_mut())) {
            *u = ulaw_to_linear(byte);
            *a = alaw_to_linear(byte);
        }
        Tables { ulaw, alaw }
    }

    /// Root-mean-square level of a frame, decoded with `table`.
    pub fn rms(table: &[i16; 256], payload: &[u8]) -> f64 {
        if payload.is_empty() {
            return 0.0;
        }
        let sum: i64 = payload
            .iter()
            .map(|&b| {
                let s = i64::from(table[usize::from(b)]);
                s * s
            })
            .sum();
        (sum as f64 / payload.len() as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from the G.711 tables (and the classic Sun g711.c reference):
    // μ-law 0xFF and 0x7F are the two zeros, 0x00 is full-scale negative,
    // bytes with the top bit set are positive.
    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
    }

    // A-law 0xD5 / 0x55 are the smallest positive / negative steps (±8),
    // 0xAA / 0x2A full scale (±32256).
    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn ulaw_encode_round_trips_every_code() {
        for byte in 0u8..=255 {
            let linear = ulaw_to_linear(byte);
            let back = linear_to_ulaw(linear);
            // 0x7F and 0xFF both mean zero; the encoder picks 0xFF.
            assert_eq!(ulaw_to_linear(back), linear, "byte {byte:#04x}");
        }
    }

    #[test]
    fn silence_is_quiet_and_tone_is_loud() {
        let t = Tables::new();
        assert!(Tables::rms(&t.ulaw, &[0xFF; 160]) < 1.0);
        assert!(Tables::rms(&t.alaw, &[0xD5; 160]) < 10.0);
        let tone: Vec<u8> = (0..160)
            .map(|i| {
                let s = (f64::from(i) * 0.3).sin() * 8000.0;
                linear_to_ulaw(s as i16)
            })
            .collect();
        assert!(Tables::rms(&t.ulaw, &tone) > 4000.0);
        assert_eq!(Tables::rms(&t.ulaw, &[]), 0.0);
    }
}
