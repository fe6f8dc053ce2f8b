//! Writes a pcap file of one 20 ms PCMU stream (tone), for sipp's
//! `play_pcap_audio`: the benchmark's agents talk with it, so bridged calls
//! carry audio the service must relay. sipp takes the RTP payload from each
//! frame and the timing from the capture timestamps; it rewrites addresses
//! and ports, so the ones written here are placeholders.

use super::rtp::write_header;
use super::send::tone_frame;
use std::io::{self, Write};
use std::path::Path;

const RTP_LEN: usize = 12 + 160;
const UDP_LEN: usize = 8 + RTP_LEN;
const IP_LEN: usize = 20 + UDP_LEN;
const FRAME_LEN: usize = 14 + IP_LEN;

fn ipv4_checksum(header: &[u8; 20]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// One Ethernet/IPv4/UDP/RTP frame carrying packet `index` of the stream.
fn frame(index: u32, audio: &[u8; 160]) -> [u8; FRAME_LEN] {
    let mut out = [0u8; FRAME_LEN];
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(IP_LEN as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(index as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
    let checksum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    out[14..34].copy_from_slice(&ip);
    let udp = &mut out[34..42];
    udp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&40_002u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(UDP_LEN as u16).to_be_bytes());
    let mut header = [0u8; 12];
    write_header(
        &mut header,
        0,
        index as u16,
        index.wrapping_mul(160),
        0x7A1C,
    );
    out[42..54].copy_from_slice(&header);
    out[54..].copy_from_slice(audio);
    out
}

/// Writes `seconds` of tone, 50 packets a second.
pub fn write(path: &Path, seconds: u32) -> io::Result<()> {
    let mut file = io::BufWriter::new(std::fs::File::create(path)?);
    // Classic pcap header: magic, version 2.4, UTC, accuracy, snaplen, Ethernet.
    file.write_all(&0xA1B2_C3D4u32.to_le_bytes())?;
    file.write_all(&2u16.to_le_bytes())?;
    file.write_all(&4u16.to_le_bytes())?;
    file.write_all(&[0u8; 8])?;
    file.write_all(&65_535u32.to_le_bytes())?;
    file.write_all(&1u32.to_le_bytes())?;
    let tone = tone_frame();
    for index in 0..seconds.saturating_mul(50) {
        let at_us = u64::from(index) * 20_000;
        file.write_all(&((at_us / 1_000_000) as u32).to_le_bytes())?;
        file.write_all(&((at_us % 1_000_000) as u32).to_le_bytes())?;
        file.write_all(&(FRAME_LEN as u32).to_le_bytes())?;
        file.write_all(&(FRAME_LEN as u32).to_le_bytes())?;
        file.write_all(&frame(index, &tone))?;
    }
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_header_checksum_verifies_to_zero() {
        let frame = frame(7, &[0xFF; 160]);
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&frame[14..34]);
        // A header that includes its own checksum sums to 0xFFFF, i.e. !0.
        assert_eq!(ipv4_checksum(&ip), 0);
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]) as usize, IP_LEN);
        assert_eq!(
            super::super::rtp::parse(&frame[42..]).map(|h| h.sequence),
            Some(7)
        );
    }
}
