//! WAV files: reading any PCM or float WAV to mono 16-bit samples, and
//! writing 8 kHz 16-bit mono.
//!
//! The reader takes 8, 16, 24 and 32-bit integer and 32-bit float samples, in
//! the plain and the extensible header, any number of channels (averaged to
//! one). It reads from any `Read` in blocks, so a long file is never held
//! twice, and it tolerates the streaming header espeak-ng writes to a pipe,
//! whose sizes are placeholders: a data chunk simply ends where the bytes do.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

/// Longest audio read (prompts, music on hold): bounds memory per file.
pub const MAX_SECONDS: u32 = 600;
/// Sample rates accepted.
pub const MIN_RATE: u32 = 4_000;
pub const MAX_RATE: u32 = 384_000;

const PCM: u16 = 0x0001;
const IEEE_FLOAT: u16 = 0x0003;
const EXTENSIBLE: u16 = 0xFFFE;
/// Bytes read per block of sample data.
const BLOCK_BYTES: usize = 64 * 1024;

/// Mono 16-bit audio at some rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

impl Pcm {
    /// Playing time.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.samples.len() as u64 * 1000 / u64::from(self.sample_rate))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    /// Unsigned 8-bit.
    U8,
    I16,
    I24,
    I32,
    F32,
}

impl Sample {
    fn bytes(self) -> usize {
        match self {
            Sample::U8 => 1,
            Sample::I16 => 2,
            Sample::I24 => 3,
            Sample::I32 | Sample::F32 => 4,
        }
    }

    /// One sample at 16-bit scale (wider integers keep their top bits).
    fn read(self, b: &[u8]) -> i32 {
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        match self {
            Sample::U8 => (i32::from(byte(0)) - 128) << 8,
            Sample::I16 => i32::from(i16::from_le_bytes([byte(0), byte(1)])),
            Sample::I24 => i32::from_le_bytes([0, byte(0), byte(1), byte(2)]) >> 16,
            Sample::I32 => i32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]) >> 16,
            Sample::F32 => {
                let v = f32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]);
                let v = if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                (f64::from(v) * 32767.0).round() as i32
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Format {
    channels: u16,
    sample_rate: u32,
    sample: Sample,
}

impl Format {
    /// Reads a `fmt ` chunk body.
    fn parse(body: &[u8]) -> Result<Format, String> {
        let u16_at = |at: usize| -> Result<u16, String> {
            body.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or_else(|| "fmt chunk too short".to_string())
        };
        let (tag, channels, block_align, bits) = (u16_at(0)?, u16_at(2)?, u16_at(12)?, u16_at(14)?);
        let sample_rate = u32::from(u16_at(4)?) | (u32::from(u16_at(6)?) << 16);
        // The extensible header names the real format in its sub-format GUID.
        let kind = if tag == EXTENSIBLE { u16_at(24)? } else { tag };
        let sample = match (kind, bits) {
            (PCM, 8) => Sample::U8,
            (PCM, 16) => Sample::I16,
            (PCM, 24) => Sample::I24,
            (PCM, 32) => Sample::I32,
            (IEEE_FLOAT, 32) => Sample::F32,
            (PCM, _) | (IEEE_FLOAT, _) => {
                return Err(format!("unsupported sample format ({bits}-bit)"))
            }
            _ => return Err(format!("unsupported format {kind}: expected PCM or float")),
        };
        if channels == 0 {
            return Err("the file declares zero channels".to_string());
        }
        if usize::from(block_align) != usize::from(channels) * sample.bytes() {
            return Err(format!(
                "inconsistent fmt chunk: {channels} channel(s) of {bits} bits in blocks of {block_align} bytes"
            ));
        }
        if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
            return Err(format!("unsupported sample rate {sample_rate} Hz"));
        }
        Ok(Format {
            channels,
            sample_rate,
            sample,
        })
    }
}

/// Reads until `buf` is full or the input ends; how many bytes were read.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize, String> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(filled)
}

/// Skips `n` bytes (fewer if the input ends first).
fn skip<R: Read>(input: &mut R, n: u64) -> Result<(), String> {
    io::copy(&mut input.take(n), &mut io::sink())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Decodes a WAV stream to mono 16-bit samples at the file's own rate.
pub fn decode<R: Read>(mut input: R) -> Result<Pcm, String> {
    let mut riff = [0u8; 12];
    if read_full(&mut input, &mut riff)? < riff.len()
        || riff.get(0..4) != Some(b"RIFF")
        || riff.get(8..12) != Some(b"WAVE")
    {
        return Err("not a RIFF/WAVE file".to_string());
    }
    let mut format: Option<Format> = None;
    loop {
        let mut header = [0u8; 8];
        if read_full(&mut input, &mut header)? < header.len() {
            return Err("no data chunk".to_string());
        }
        let (id, size) = header.split_at(4);
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
        // Chunks are padded to an even length.
        let padded = u64::from(size) + u64::from(size & 1);
        match id {
            b"fmt " => {
                let mut body = [0u8; 40];
                let want = body.len().min(size as usize);
                let got = read_full(&mut input, body.get_mut(..want).unwrap_or_default())?;
                format = Some(Format::parse(body.get(..got).unwrap_or_default())?);
                skip(&mut input, padded.saturating_sub(got as u64))?;
            }
            b"data" => {
                let format = format.ok_or_else(|| "data chunk before fmt chunk".to_string())?;
                return read_samples(input.take(u64::from(size)), format);
            }
            _ => skip(&mut input, padded)?,
        }
    }
}

fn read_samples<R: Read>(mut data: R, format: Format) -> Result<Pcm, String> {
    let channels = usize::from(format.channels);
    let frame = channels * format.sample.bytes();
    let max_frames = u64::from(format.sample_rate) * u64::from(MAX_SECONDS);
    let mut block = vec![0u8; frame * (BLOCK_BYTES / frame).max(1)];
    let mut samples = Vec::new();
    loop {
        let n = read_full(&mut data, &mut block)?;
        for f in block.get(..n).unwrap_or_default().chunks_exact(frame) {
            let sum: i64 = f
                .chunks_exact(format.sample.bytes())
                .map(|s| i64::from(format.sample.read(s)))
                .sum();
            samples.push((sum / channels as i64) as i16);
        }
        if samples.len() as u64 > max_frames {
            return Err(format!("longer than {MAX_SECONDS} seconds"));
        }
        if n < block.len() {
            break;
        }
    }
    Ok(Pcm {
        sample_rate: format.sample_rate,
        samples,
    })
}

/// Decodes WAV bytes (e.g. a synthesiser's output).
pub fn parse(bytes: &[u8]) -> Result<Pcm, String> {
    decode(bytes)
}

/// Decodes a WAV file.
pub fn read_file(path: &Path) -> Result<Pcm, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    decode(io::BufReader::new(file))
}

/// An 8 kHz 16-bit mono WAV file.
pub fn encode_8k(samples: &[i16]) -> Vec<u8> {
    const RATE: u32 = 8_000;
    let data_len = samples.len().saturating_mul(2);
    let mut out = Vec::with_capacity(44 + data_len);
    let riff_len = u32::try_from(36 + data_len).unwrap_or(u32::MAX);
    let data_len = u32::try_from(data_len).unwrap_or(u32::MAX);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testing::foreign_wav;

    fn encode_wav(samples: &[i16]) -> Vec<u8> {
        encode_8k(samples)
    }

    fn parse_wav(bytes: &[u8]) -> Result<Pcm, String> {
        parse(bytes)
    }
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
    fn every_common_format_reads_to_the_same_levels() {
        let levels = [0.0f32, 0.5, -0.5, 0.25, -1.0];
        let want = [0i32, 16384, -16384, 8192, -32768];
        let int = hound::SampleFormat::Int;
        let float = hound::SampleFormat::Float;
        // Hound writes the extensible header for more than 16 bits or two channels.
        for (channels, bits, format) in [
            (1, 8, int),
            (1, 16, int),
            (2, 16, int),
            (1, 24, int),
            (3, 24, int),
            (1, 32, int),
            (2, 32, float),
        ] {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 48_000,
                bits_per_sample: bits,
                sample_format: format,
            };
            let pcm = parse(&foreign_wav(spec, &levels)).expect("reads");
            assert_eq!(pcm.sample_rate, 48_000);
            assert_eq!(pcm.samples.len(), levels.len());
            for (got, want) in pcm.samples.iter().zip(want) {
                let err = (i32::from(*got) - want).abs();
                assert!(err <= 260, "{channels} ch {bits} bit: {got} vs {want}");
            }
        }
    }

    #[test]
    fn length_and_rate_are_bounded() {
        let mut long = encode_wav(&vec![0; 4_000 * MAX_SECONDS as usize + 4_000]);
        long[24..28].copy_from_slice(&4_000u32.to_le_bytes());
        assert_eq!(
            parse(&long).map(|p| p.samples.len()),
            Err(format!("longer than {MAX_SECONDS} seconds"))
        );
        let mut fast = encode_wav(&[1, 2]);
        fast[24..28].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(parse(&fast).expect_err("rate").contains("1000000 Hz"));
        let pcm = parse(&encode_wav(&[0; 4_000])).expect("reads");
        assert_eq!(pcm.duration(), Duration::from_millis(500));
    }
}
