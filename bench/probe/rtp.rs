//! Just enough of the RTP fixed header (RFC 3550 §5.1) to demultiplex streams
//! and find the payload. Anything malformed is refused, never trusted.

/// The fields the probe needs from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Byte range of the payload inside the datagram.
    pub payload_start: usize,
    pub payload_end: usize,
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the header; `None` for anything that is not RTP version 2 or is cut short.
pub fn parse(datagram: &[u8]) -> Option<Header> {
    let first = *datagram.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let padding = first & 0x20 != 0;
    let extension = first & 0x10 != 0;
    let csrc_count = usize::from(first & 0x0F);
    let second = *datagram.get(1)?;
    let mut payload_start = 12 + 4 * csrc_count;
    if extension {
        let words = usize::from(be16(datagram, payload_start + 2)?);
        payload_start += 4 + 4 * words;
    }
    let mut payload_end = datagram.len();
    if padding {
        let pad = usize::from(*datagram.last()?);
        payload_end = payload_end.checked_sub(pad)?;
    }
    if payload_start > payload_end {
        return None;
    }
    Some(Header {
        payload_type: second & 0x7F,
        sequence: be16(datagram, 2)?,
        timestamp: be32(datagram, 4)?,
        ssrc: be32(datagram, 8)?,
        payload_start,
        payload_end,
    })
}

/// Writes a plain 12-byte header (no CSRC, no extension) for the synthetic sender.
pub fn write_header(
    out: &mut [u8; 12],
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out[0] = 0x80;
    out[1] = payload_type & 0x7F;
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_plain_header() {
        let mut packet = [0u8; 172];
        let mut header = [0u8; 12];
        write_header(&mut header, 8, 0xBEEF, 0xDEAD_BEEF, 42);
        packet[..12].copy_from_slice(&header);
        let h = parse(&packet).expect("valid header");
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.sequence, 0xBEEF);
        assert_eq!(h.timestamp, 0xDEAD_BEEF);
        assert_eq!(h.ssrc, 42);
        assert_eq!((h.payload_start, h.payload_end), (12, 172));
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        // V=2, P=1, X=1, CC=1; marker + PT 0.
        let mut p = vec![0xB1, 0x80, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[1, 2, 3, 4]); // CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        p.extend_from_slice(&[0xFF; 10]); // payload
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let h = parse(&p).expect("valid header");
        assert_eq!(h.payload_start, 24);
        assert_eq!(h.payload_end, 34);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x80, 0, 0]), None);
        assert_eq!(parse(&[0x40; 20]), None); // version 1
        assert_eq!(parse(&[0x8F; 20]), None); // 15 CSRCs, too short
                                              // Padding longer than the packet.
        let mut p = [0u8; 13];
        p[0] = 0xA0;
        p[12] = 200;
        assert_eq!(parse(&p), None);
        // Extension length pointing past the end.
        let mut p = [0u8; 16];
        p[0] = 0x90;
        p[14] = 0xFF;
        assert_eq!(parse(&p), None);
    }
}
