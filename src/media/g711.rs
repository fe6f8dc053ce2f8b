//! G.711 μ-law and A-law companding (ITU-T G.711), on 16-bit linear samples.
//!
//! Encoding is done once per prompt at load time, so plain arithmetic is fast
//! enough and easier to check than a 64 KiB lookup table.

/// μ-law byte for linear 0 (the bits are inverted on the wire).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law byte for the smallest positive level (even bits inverted on the wire).
pub const ALAW_SILENCE: u8 = 0xD5;

/// μ-law bias: added before finding the segment so that segment 0 starts at 0.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law can represent before the bias would overflow 15 bits.
const ULAW_CLIP: i32 = 32635;

/// Encodes one linear sample to μ-law.
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let value = sample as i32;
    let (sign, magnitude) = if value < 0 {
        (0x00u8, min_i32(-value, ULAW_CLIP))
    } else {
        (0x80u8, min_i32(value, ULAW_CLIP))
    };
    let biased = magnitude + ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7 (0..=7).
    let segment = min_u32((31 - biased.leading_zeros()).saturating_sub(7), 7);
    let mantissa = ((biased >> (segment + 3)) & 0x0F) as u8;
    // The wire format inverts every bit; positive samples carry the sign bit 1.
    (sign | ((segment as u8) << 4) | mantissa) ^ 0x7F
}

/// Decodes one μ-law byte to a linear sample.
pub const fn ulaw_to_linear(byte: u8) -> i16 {
    let inverted = !byte;
    let segment = (inverted >> 4) & 0x07;
    let mantissa = (inverted & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    // Magnitude is at most 32124, so the casts cannot truncate.
    if inverted & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one linear sample to A-law.
pub const fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit values; negative values use one's complement so that
    // -1 and 0 land in the two smallest levels either side of zero.
    let value = (sample as i32) >> 3;
    let (sign, magnitude) = if value >= 0 {
        (0x80u8, value)
    } else {
        (0x00u8, -value - 1)
    };
    let code = if magnitude < 0x20 {
        (magnitude >> 1) as u8
    } else {
        // Segment 1..=7 from the highest set bit (bit 5 → segment 1).
        let segment = (31 - magnitude.leading_zeros()).saturating_sub(4);
        if segment > 7 {
            0x7F
        } else {
            ((segment as u8) << 4) | ((magnitude >> segment) & 0x0F) as u8
        }
    };
    // Even bits are inverted on the wire (XOR 0x55).
    (sign | code) ^ 0x55
}

/// Decodes one A-law byte to a linear sample.
pub const fn alaw_to_linear(byte: u8) -> i16 {
    let value = byte ^ 0x55;
    let segment = (value >> 4) & 0x07;
    let mantissa = ((value & 0x0F) as i32) << 4;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        s => (mantissa + 0x108) << (s - 1),
    };
    // Magnitude is at most 32256, so the casts cannot truncate.
    if value & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn min_i32(a: i32, b: i32) -> i32 {
    if a < b {
        a
    } else {
        b
    }
}

const fn min_u32(a: u32, b: u32) -> u32 {
    if a < b {
        a
    } else {
        b
    }
}

/// μ-law byte to the A-law byte of the same level, for bridging legs whose
/// codecs differ: one lookup per sample, built at compile time.
pub static ULAW_TO_ALAW: [u8; 256] = transcode_table(true);
/// A-law byte to the μ-law byte of the same level.
pub static ALAW_TO_ULAW: [u8; 256] = transcode_table(false);

const fn transcode_table(from_ulaw: bool) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = if from_ulaw {
            linear_to_alaw(ulaw_to_linear(byte as u8))
        } else {
            linear_to_ulaw(alaw_to_linear(byte as u8))
        };
        byte += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_full_scale_match_the_standard_tables() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
        assert_eq!(linear_to_alaw(-1), 0x55);

        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);

        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn reference_points_from_the_decoding_tables() {
        // Segment edges of the G.711 decoding tables, scaled to 16 bits.
        assert_eq!(ulaw_to_linear(0xEF), 132); // first step of segment 1
        assert_eq!(ulaw_to_linear(0xDF), 396);
        assert_eq!(ulaw_to_linear(0x8F), 16764);
        assert_eq!(alaw_to_linear(0xC5), 264);
        assert_eq!(alaw_to_linear(0xF5), 528);
        assert_eq!(alaw_to_linear(0x85), 4224);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for byte in 0..=255u8 {
            let expected_ulaw = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(byte)),
                expected_ulaw,
                "μ {byte:#x}"
            );
            assert_eq!(linear_to_alaw(alaw_to_linear(byte)), byte, "A {byte:#x}");
        }
    }

    #[test]
    fn round_trip_error_is_bounded_and_monotonic_over_all_samples() {
        let mut previous_u = i16::MIN;
        let mut previous_a = i16::MIN;
        for sample in i16::MIN..=i16::MAX {
            let s = i32::from(sample);
            let u = ulaw_to_linear(linear_to_ulaw(sample));
            let a = alaw_to_linear(linear_to_alaw(sample));
            // Half a quantisation step: about 1/32 of the level, at least a few units;
            // above the clip level the error is the distance to the largest code.
            let bound = s.abs() / 32 + 8;
            let clip_u = (s.abs() - 32124).max(0);
            let clip_a = (s.abs() - 32256).max(0);
            assert!(
                (i32::from(u) - s).abs() <= bound.max(clip_u),
                "μ {sample} → {u}"
            );
            assert!(
                (i32::from(a) - s).abs() <= bound.max(clip_a),
                "A {sample} → {a}"
            );
            assert!(
                u >= previous_u && a >= previous_a,
                "not monotonic at {sample}"
            );
            previous_u = u;
            previous_a = a;
        }
    }

    #[test]
    fn transcoding_tables_keep_the_level() {
        for byte in 0..=255u8 {
            let u = i32::from(ulaw_to_linear(byte));
            let a = i32::from(alaw_to_linear(ULAW_TO_ALAW[usize::from(byte)]));
            assert!((u - a).abs() <= u.abs() / 16 + 16, "μ {byte:#x}: {u} → {a}");
            let a = i32::from(alaw_to_linear(byte));
            let u = i32::from(ulaw_to_linear(ALAW_TO_ULAW[usize::from(byte)]));
            assert!((u - a).abs() <= a.abs() / 16 + 16, "A {byte:#x}: {a} → {u}");
        }
        assert_eq!(ULAW_TO_ALAW[usize::from(ULAW_SILENCE)], ALAW_SILENCE);
    }
}
