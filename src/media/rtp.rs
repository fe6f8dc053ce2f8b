//! The RTP fixed header (RFC 3550 §5.1): written into caller buffers, parsed
//! without copying.

/// Length of the fixed header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;
/// The only RTP version in use.
pub const VERSION: u8 = 2;

/// Fields of the header we send: no CSRC, no extension, no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes the 12-byte header at the start of `buf`; `None` if it is too short.
    pub fn write(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..HEADER_LEN)?;
        out[0] = VERSION << 6;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7F);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Some(HEADER_LEN)
    }
}

/// A received packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub csrc_count: u8,
    /// Profile-defined id of the header extension, if one was present.
    pub extension_profile: Option<u16>,
    /// Payload with CSRCs, extension and padding removed.
    pub payload: &'a [u8],
}

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than its RTP header")]
    Truncated,
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("padding length does not fit the packet")]
    BadPadding,
}

/// Parses an RTP datagram. Never panics: every length comes from checked slicing.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let located = locate(datagram)?;
    Ok(RtpPacket {
        header: located.header,
        csrc_count: located.csrc_count,
        extension_profile: located.extension_profile,
        payload: datagram.get(located.payload).ok_or(RtpError::Truncated)?,
    })
}

/// Where a datagram's parts are, so that it can be rewritten in place (the
/// relay writes a new header just before the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub header: RtpHeader,
    pub csrc_count: u8,
    pub extension_profile: Option<u16>,
    /// Payload bounds in the datagram; `payload.start >= HEADER_LEN`.
    pub payload: std::ops::Range<usize>,
}

/// Like [`parse`], giving the payload's position instead of borrowing it.
pub fn locate(datagram: &[u8]) -> Result<Located, RtpError> {
    let fixed = datagram.get(..HEADER_LEN).ok_or(RtpError::Truncated)?;
    let first = fixed[0];
    let version = first >> 6;
    if version != VERSION {
        return Err(RtpError::Version(version));
    }
    let has_padding = first & 0x20 != 0;
    let has_extension = first & 0x10 != 0;
    let csrc_count = first & 0x0F;
    let header = RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7F,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
    };

    let mut start = HEADER_LEN + 4 * usize::from(csrc_count);
    let mut rest = datagram.get(start..).ok_or(RtpError::Truncated)?;
    let mut extension_profile = None;
    if has_extension {
        let ext = rest.get(..4).ok_or(RtpError::Truncated)?;
        extension_profile = Some(u16::from_be_bytes([ext[0], ext[1]]));
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        rest = rest.get(4 + 4 * words..).ok_or(RtpError::Truncated)?;
        start += 4 + 4 * words;
    }
    if has_padding {
        // The last octet counts the padding octets, itself included.
        let pad = usize::from(*rest.last().ok_or(RtpError::BadPadding)?);
        if pad == 0 || pad > rest.len() {
            return Err(RtpError::BadPadding);
        }
        rest = rest.get(..rest.len() - pad).ok_or(RtpError::BadPadding)?;
    }
    Ok(Located {
        header,
        csrc_count,
        extension_profile,
        payload: start..start + rest.len(),
    })
}

/// A datagram as a peer sends it: header (no marker) and payload.
#[cfg(test)]
pub fn datagram(pt: u8, sequence: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_LEN];
    RtpHeader {
        marker: false,
        payload_type: pt,
        sequence,
        timestamp,
        ssrc,
    }
    .write(&mut bytes);
    bytes.extend_from_slice(payload);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trips() {
        let header = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xFFFE,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let mut buf = [0u8; HEADER_LEN + 3];
        assert_eq!(header.write(&mut buf), Some(HEADER_LEN));
        buf[HEADER_LEN..].copy_from_slice(&[1, 2, 3]);
        assert_eq!(
            &buf[..HEADER_LEN],
            &[0x80, 0x88, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        let packet = parse(&buf).expect("valid");
        assert_eq!(packet.header, header);
        assert_eq!(packet.payload, &[1, 2, 3]);
        assert_eq!(packet.csrc_count, 0);
        assert!(header.write(&mut [0u8; 11]).is_none());
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        let mut packet = vec![0xB2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        packet.extend_from_slice(&[0xAA; 8]); // two CSRCs
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        packet.extend_from_slice(&[7, 7]); // payload
        packet.extend_from_slice(&[0, 0, 3]); // three octets of padding
        let parsed = parse(&packet).expect("valid");
        assert_eq!(parsed.csrc_count, 2);
        assert_eq!(parsed.extension_profile, Some(0xBEDE));
        assert_eq!(parsed.payload, &[7, 7]);
        assert_eq!(locate(&packet).expect("valid").payload, 28..30);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(parse(&[]), Err(RtpError::Truncated));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(parse(&[0x40; 12]).err(), Some(RtpError::Version(1)));
        // CSRC count larger than the packet.
        assert_eq!(parse(&[0x8F; 12]), Err(RtpError::Truncated));
        // Extension header missing, then extension length too long.
        assert_eq!(parse(&[0x90; 12]), Err(RtpError::Truncated));
        let mut ext = vec![0x90; 12];
        ext.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        assert_eq!(parse(&ext), Err(RtpError::Truncated));
        // Padding: empty, zero, and longer than the packet.
        assert_eq!(parse(&[0xA0; 12]), Err(RtpError::BadPadding));
        let mut pad = vec![0xA0; 12];
        pad.push(0);
        assert_eq!(parse(&pad), Err(RtpError::BadPadding));
        pad.push(5);
        assert_eq!(parse(&pad), Err(RtpError::BadPadding));
        // Every prefix of every byte pattern is handled.
        for fill in 0..=255u8 {
            for len in 0..40 {
                let _ = parse(&vec![fill; len]);
            }
        }
    }
}
