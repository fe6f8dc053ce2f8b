//! RFC 4733 telephone-event receiver, sans IO.
//!
//! A sender reports one key press as many packets with the same RTP timestamp:
//! a start packet, updates with growing duration, and an end packet repeated
//! (usually three times). The caller wants one digit per press, as early as
//! possible so that it can cut a prompt short, so a digit is reported on the
//! first packet seen for a new (SSRC, timestamp) and everything else is ignored.

/// Length of one event report (RFC 4733 §2.3).
pub const EVENT_LEN: usize = 4;

/// One event report from a telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first report of a payload; `None` if it is shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let report = payload.get(..EVENT_LEN)?;
        Some(TelephoneEvent {
            event: report[0],
            end: report[1] & 0x80 != 0,
            volume: report[1] & 0x3F,
            duration: u16::from_be_bytes([report[2], report[3]]),
        })
    }
}

/// The key of a DTMF event code (RFC 4733 §3.2): 0-9, *, #, A-D.
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Events remembered, so that a late packet of an earlier event is not taken
/// for a new press.
const REMEMBERED: usize = 4;
/// A long event is split into segments whose timestamps are this far apart
/// (RFC 4733 §2.5.1.3); the continuation is the same press.
const SEGMENT_STEP: u32 = 0xFFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeenEvent {
    ssrc: u32,
    timestamp: u32,
    event: u8,
}

/// Turns telephone-event packets into one digit per key press.
#[derive(Debug, Default)]
pub struct DtmfDetector {
    seen: [Option<SeenEvent>; REMEMBERED],
    next_slot: usize,
}

impl DtmfDetector {
    pub fn new() -> DtmfDetector {
        DtmfDetector::default()
    }

    /// Feeds one telephone-event packet (its SSRC, RTP timestamp and payload);
    /// returns the digit when this packet is the first seen of a new press.
    pub fn on_packet(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) -> Option<char> {
        let report = TelephoneEvent::parse(payload)?;
        let already_seen = self.seen.iter().flatten().any(|seen| {
            seen.ssrc == ssrc
                && (seen.timestamp == timestamp
                    || (seen.event == report.event
                        && seen.timestamp.wrapping_add(SEGMENT_STEP) == timestamp))
        });
        // Remember segments too, so that a third segment is recognised as well.
        if !self
            .seen
            .iter()
            .flatten()
            .any(|s| s.ssrc == ssrc && s.timestamp == timestamp)
        {
            self.remember(SeenEvent {
                ssrc,
                timestamp,
                event: report.event,
            });
        }
        if already_seen {
            return None;
        }
        event_to_digit(report.event)
    }

    fn remember(&mut self, event: SeenEvent) {
        if let Some(slot) = self.seen.get_mut(self.next_slot) {
            *slot = Some(event);
        }
        self.next_slot = (self.next_slot + 1) % REMEMBERED;
    }
}

/// Decides which telephone-event packets a bridge passes on: only those of
/// events that started while the bridge was open.
///
/// A key press is many packets over 100 ms or more, its end sent three times.
/// The press that asks for an adviser opens the bridge within that time, so
/// without this the tail of that press would reach the agent's phone, which
/// would hear the caller press a key they pressed before it was connected.
/// Every event seen while not bridged is remembered by (SSRC, timestamp), the
/// same key `DtmfDetector` uses; packets of a remembered event are never
/// relayed, whenever they come. Sans IO and allocation-free: the receive
/// task feeds it each telephone-event packet.
#[derive(Debug, Default)]
pub struct EventRelayGate {
    held: [Option<(u32, u32)>; REMEMBERED],
    next_slot: usize,
}

impl EventRelayGate {
    pub fn new() -> EventRelayGate {
        EventRelayGate::default()
    }

    /// Whether to relay one telephone-event packet (its SSRC and RTP
    /// timestamp); `bridged` says whether the leg is bridged now.
    pub fn relay(&mut self, ssrc: u32, timestamp: u32, bridged: bool) -> bool {
        let held = |&(s, t): &(u32, u32)| s == ssrc && t == timestamp;
        let continues =
            |&(s, t): &(u32, u32)| s == ssrc && t.wrapping_add(SEGMENT_STEP) == timestamp;
        if self.held.iter().flatten().any(held) {
            return false;
        }
        // The next segment of a long held event (RFC 4733 §2.5.1.3) is held
        // too, and remembered so that the segment after it is as well.
        if !bridged || self.held.iter().flatten().any(continues) {
            self.hold(ssrc, timestamp);
            return false;
        }
        true
    }

    fn hold(&mut self, ssrc: u32, timestamp: u32) {
        if let Some(slot) = self.held.get_mut(self.next_slot) {
            *slot = Some((ssrc, timestamp));
        }
        self.next_slot = (self.next_slot + 1) % REMEMBERED;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::rtp;

    /// The RTP packets of sipp's `dtmf_2833_2.pcap` (digit 2, payload type 101):
    /// start with marker, six updates every 40 ms of duration, end sent three times.
    pub(crate) const SIPP_DIGIT_2: [[u8; 16]; 10] = [
        hex16("80e51f6a00005aa00e05384e020a0000"),
        hex16("80651f6b00005aa00e05384e020a0140"),
        hex16("80651f6c00005aa00e05384e020a0280"),
        hex16("80651f6d00005aa00e05384e020a03c0"),
        hex16("80651f6e00005aa00e05384e020a0500"),
        hex16("80651f6f00005aa00e05384e020a0640"),
        hex16("80651f7000005aa00e05384e020a0780"),
        hex16("80651f7100005aa00e05384e028a08c0"),
        hex16("80651f7100005aa00e05384e028a08c0"),
        hex16("80651f7100005aa00e05384e028a08c0"),
    ];

    const fn hex16(text: &str) -> [u8; 16] {
        const fn nibble(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => panic!("not hex"),
            }
        }
        let bytes = text.as_bytes();
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
            i += 1;
        }
        out
    }

    fn feed(detector: &mut DtmfDetector, datagram: &[u8]) -> Option<char> {
        let packet = rtp::parse(datagram).expect("valid RTP");
        assert_eq!(packet.header.payload_type, 101);
        detector.on_packet(packet.header.ssrc, packet.header.timestamp, packet.payload)
    }

    fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [code, if end { 0x8A } else { 0x0A }, d[0], d[1]]
    }

    #[test]
    fn sipp_digit_is_reported_once_at_the_first_packet() {
        let mut detector = DtmfDetector::new();
        let digits: Vec<Option<char>> = SIPP_DIGIT_2
            .iter()
            .map(|p| feed(&mut detector, p))
            .collect();
        assert_eq!(digits[0], Some('2'));
        assert!(digits[1..].iter().all(Option::is_none), "{digits:?}");
        let end = TelephoneEvent::parse(&SIPP_DIGIT_2[9][12..]).expect("report");
        assert_eq!(
            end,
            TelephoneEvent {
                event: 2,
                end: true,
                volume: 10,
                duration: 2240
            }
        );
    }

    #[test]
    fn sipp_capture_on_disk_agrees_with_the_fixture() {
        // Optional cross-check against the installed capture; skipped if absent.
        let Ok(pcap) = std::fs::read("/usr/share/sip-tester/dtmf_2833_2.pcap") else {
            return;
        };
        let mut offset = 24; // global header
        let mut index = 0;
        while let Some(record) = pcap.get(offset..offset + 16) {
            let len = u32::from_le_bytes([record[8], record[9], record[10], record[11]]) as usize;
            let frame = &pcap[offset + 16..offset + 16 + len];
            // Ethernet (14) + IPv4 (20) + UDP (8).
            assert_eq!(&frame[42..], &SIPP_DIGIT_2[index][..]);
            offset += 16 + len;
            index += 1;
        }
        assert_eq!(index, SIPP_DIGIT_2.len());
    }

    #[test]
    fn press_sequence_in_the_manner_of_rfc_4733() {
        // Two presses of the same key: a new timestamp is a new press, even for
        // the same event code; updates and the three end packets are ignored.
        let mut detector = DtmfDetector::new();
        let ssrc = 0x1234;
        assert_eq!(
            detector.on_packet(ssrc, 0, &event(1, false, 400)),
            Some('1')
        );
        assert_eq!(detector.on_packet(ssrc, 0, &event(1, false, 800)), None);
        for _ in 0..3 {
            assert_eq!(detector.on_packet(ssrc, 0, &event(1, true, 1040)), None);
        }
        assert_eq!(
            detector.on_packet(ssrc, 2000, &event(1, false, 400)),
            Some('1')
        );
        assert_eq!(detector.on_packet(ssrc, 2000, &event(1, true, 800)), None);
        // Only the end packets of a press arrive: still one digit.
        assert_eq!(
            detector.on_packet(ssrc, 4000, &event(11, true, 800)),
            Some('#')
        );
        assert_eq!(detector.on_packet(ssrc, 4000, &event(11, true, 800)), None);
        assert_eq!(detector.on_packet(ssrc, 4000, &event(11, true, 800)), None);
        // A late update of the first press does not come back as a new digit.
        assert_eq!(detector.on_packet(ssrc, 0, &event(1, false, 600)), None);
    }

    #[test]
    fn only_end_packets_give_exactly_one_digit() {
        let mut detector = DtmfDetector::new();
        let digits: Vec<_> = (0..3)
            .filter_map(|_| detector.on_packet(7, 160, &event(11, true, 800)))
            .collect();
        assert_eq!(digits, vec!['#']);
    }

    #[test]
    fn long_event_segments_are_one_press() {
        let mut detector = DtmfDetector::new();
        assert_eq!(
            detector.on_packet(1, 100, &event(5, false, 0xFFFF)),
            Some('5')
        );
        assert_eq!(
            detector.on_packet(1, 100 + 0xFFFF, &event(5, false, 800)),
            None
        );
        assert_eq!(
            detector.on_packet(1, 100 + 2 * 0xFFFF, &event(5, true, 80)),
            None
        );
    }

    #[test]
    fn maps_every_dtmf_event_and_ignores_others() {
        let keys: String = (0..16).filter_map(event_to_digit).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        assert_eq!(event_to_digit(16), None);
        let mut detector = DtmfDetector::new();
        assert_eq!(detector.on_packet(1, 1, &event(16, false, 0)), None);
        assert_eq!(detector.on_packet(1, 2, &[1, 2, 3]), None);
        assert_eq!(detector.on_packet(1, 3, &[]), None);
    }

    #[test]
    fn a_new_source_starts_a_new_press() {
        let mut detector = DtmfDetector::new();
        assert_eq!(detector.on_packet(1, 500, &event(3, false, 0)), Some('3'));
        assert_eq!(detector.on_packet(2, 500, &event(3, false, 0)), Some('3'));
    }

    #[test]
    fn the_tail_of_a_press_made_before_the_bridge_is_never_relayed() {
        let mut gate = EventRelayGate::new();
        // The caller presses 0: the first packets arrive before the bridge.
        let (ssrc, zero) = (0x0e05_384e, 17_632);
        assert!(!gate.relay(ssrc, zero, false));
        assert!(!gate.relay(ssrc, zero, false));
        // The bridge opens; the rest of the 0, and its three end packets,
        // stay on this side.
        for _ in 0..5 {
            assert!(!gate.relay(ssrc, zero, true));
        }
        // A press that starts after the bridge opened crosses it, all of it.
        for _ in 0..8 {
            assert!(gate.relay(ssrc, zero + 8_000, true));
        }
        // So does one from a new source with the same timestamp.
        assert!(gate.relay(7, zero, true));
    }

    #[test]
    fn held_events_are_remembered_across_unbridge_and_long_presses() {
        let mut gate = EventRelayGate::new();
        assert!(!gate.relay(1, 100, false));
        assert!(gate.relay(1, 900, true));
        // Unbridged (back in the queue), a press; bridged again to another
        // agent while it goes on, across two segment boundaries.
        assert!(!gate.relay(1, 2_000, false));
        assert!(!gate.relay(1, 2_000 + SEGMENT_STEP, true));
        assert!(!gate.relay(1, 2_000 + 2 * SEGMENT_STEP, true));
        // A press after that one passes.
        assert!(gate.relay(1, 2_000 + 3 * SEGMENT_STEP + 800, true));
        // The gate remembers a few events, the most recent: an old one seen
        // again is by now long over, and the newest are still held.
        for ts in [10_000u32, 20_000, 30_000, 40_000, 50_000] {
            assert!(!gate.relay(1, ts, false));
        }
        assert!(!gate.relay(1, 50_000, true));
        assert!(!gate.relay(1, 20_000, true));
    }
}
