//! One piece of audio ready to send: 8 kHz mono, pre-encoded once to both
//! G.711 laws, whole 20 ms frames. Prompts and music on hold are clips.

use super::g711;
use super::{Codec, FRAME_BYTES, FRAME_DURATION, SAMPLE_RATE};
use crate::audio::{self, wav};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    /// Reads a WAV file of any common format and rate (`audio::wav`) and
    /// encodes it.
    pub fn from_wav_file(path: &Path) -> Result<Clip, PromptError> {
        let error = |reason: String| PromptError {
            path: path.to_path_buf(),
            reason,
        };
        let pcm = wav::read_file(path).map_err(error)?;
        if pcm.samples.is_empty() {
            return Err(error("the file contains no audio".to_string()));
        }
        let samples = audio::resample(&pcm.samples, pcm.sample_rate, SAMPLE_RATE)
            .map_err(|e| error(e.to_string()))?;
        Ok(Clip::from_samples(&samples))
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

/// A prompt file exists but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; save it as a WAV file (8 kHz 16-bit mono PCM is best) or re-render it with `hotline prompts render`", path.display())]
pub struct PromptError {
    pub path: PathBuf,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
