//! Per-stream recording of arrivals. Everything is sized up front: the stream
//! table has a fixed capacity, each stream's sample buffer is reserved when
//! the stream first appears, and a packet only ever writes into that space.

use super::g711::Tables;
use super::rtp::Header;
use std::collections::HashMap;

/// One received packet, as the analysis needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Arrival, nanoseconds since the measurement window opened.
    pub arrival_ns: u64,
    /// RTP timestamp, unwrapped, relative to the stream's first packet.
    pub timestamp: i64,
    /// Sequence number, unwrapped, relative to the stream's first packet.
    pub sequence: i64,
}

/// A frame is "silent" below this RMS level (about −60 dBFS).
pub const SILENCE_RMS: f64 = 33.0;

/// Counts by payload kind and loudness.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCounts {
    pub pcmu: u64,
    pub pcma: u64,
    /// Any other payload type (telephone-event, comfort noise, ...).
    pub other: u64,
    pub silent: u64,
    pub audible: u64,
}

/// What one SSRC sent during the window.
#[derive(Debug)]
pub struct Stream {
    pub ssrc: u32,
    pub samples: Vec<Sample>,
    /// Packets received after `samples` was full.
    pub overflow: u64,
    pub received: u64,
    /// Arrivals whose sequence is below the highest seen so far.
    pub reordered: u64,
    pub frames: FrameCounts,
    last_sequence: u16,
    last_sequence_ext: i64,
    pub max_sequence: i64,
    pub min_sequence: i64,
    last_timestamp: u32,
    last_timestamp_ext: i64,
}

impl Stream {
    fn new(ssrc: u32, header: &Header, capacity: usize) -> Stream {
        Stream {
            ssrc,
            samples: Vec::with_capacity(capacity),
            overflow: 0,
            received: 0,
            reordered: 0,
            frames: FrameCounts::default(),
            last_sequence: header.sequence,
            last_sequence_ext: 0,
            max_sequence: 0,
            min_sequence: 0,
            last_timestamp: header.timestamp,
            last_timestamp_ext: 0,
        }
    }

    /// Sequence numbers the stream should have delivered in the window.
    pub fn expected(&self) -> u64 {
        (self.max_sequence - self.min_sequence + 1).max(0) as u64
    }

    /// Expected minus received, never negative (duplicates can outnumber gaps).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    fn record(&mut self, arrival_ns: u64, header: &Header) {
        // Unwrap relative to the previous packet: a step of up to half the
        // number space either way is taken at face value.
        let seq_step = i64::from(header.sequence.wrapping_sub(self.last_sequence) as i16);
        let sequence = self.last_sequence_ext + seq_step;
        self.last_sequence = header.sequence;
        self.last_sequence_ext = sequence;
        let ts_step = i64::from(header.timestamp.wrapping_sub(self.last_timestamp) as i32);
        let timestamp = self.last_timestamp_ext + ts_step;
        self.last_timestamp = header.timestamp;
        self.last_timestamp_ext = timestamp;

        self.received += 1;
        if sequence < self.max_sequence {
            self.reordered += 1;
        }
        self.max_sequence = self.max_sequence.max(sequence);
        self.min_sequence = self.min_sequence.min(sequence);
        if self.samples.len() < self.samples.capacity() {
            self.samples.push(Sample {
                arrival_ns,
                timestamp,
                sequence,
            });
        } else {
            self.overflow += 1;
        }
    }
}

/// Bounds on what a recording may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_streams: usize,
    pub samples_per_stream: usize,
}

/// Every stream seen in the window, plus what could not be attributed.
pub struct Recorder {
    limits: Limits,
    index: HashMap<u32, usize>,
    pub streams: Vec<Stream>,
    /// Packets from SSRCs beyond `max_streams`.
    pub packets_over_stream_cap: u64,
    /// Datagrams that were not RTP.
    pub not_rtp: u64,
    pub frames: FrameCounts,
    tables: Tables,
}

impl Recorder {
    pub fn new(limits: Limits) -> Recorder {
        Recorder {
            limits,
            index: HashMap::with_capacity(limits.max_streams),
            streams: Vec::with_capacity(limits.max_streams),
            packets_over_stream_cap: 0,
            not_rtp: 0,
            frames: FrameCounts::default(),
            tables: Tables::new(),
        }
    }

    /// Records one datagram that arrived `arrival_ns` into the window.
    pub fn record(&mut self, arrival_ns: u64, datagram: &[u8]) {
        let Some(header) = super::rtp::parse(datagram) else {
            self.not_rtp += 1;
            return;
        };
        let slot = match self.index.get(&header.ssrc) {
            Some(&slot) => slot,
            None => {
                if self.streams.len() >= self.limits.max_streams {
                    self.packets_over_stream_cap += 1;
                    return;
                }
                let slot = self.streams.len();
                self.streams.push(Stream::new(
                    header.ssrc,
                    &header,
                    self.limits.samples_per_stream,
                ));
                self.index.insert(header.ssrc, slot);
                slot
            }
        };
        let payload = datagram
            .get(header.payload_start..header.payload_end)
            .unwrap_or(&[]);
        let table = match header.payload_type {
            0 => Some(&self.tables.ulaw),
            8 => Some(&self.tables.alaw),
            _ => None,
        };
        let Some(stream) = self.streams.get_mut(slot) else {
            return;
        };
        let frame = |counts: &mut FrameCounts| match table {
            Some(table) => {
                if header.payload_type == 0 {
                    counts.pcmu += 1;
                } else {
                    counts.pcma += 1;
                }
                if Tables::rms(table, payload) < SILENCE_RMS {
                    counts.silent += 1;
                } else {
                    counts.audible += 1;
                }
            }
            None => counts.other += 1,
        };
        frame(&mut stream.frames);
        frame(&mut self.frames);
        stream.record(arrival_ns, &header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::rtp::write_header;

    fn packet(ssrc: u32, seq: u16, ts: u32, fill: u8) -> Vec<u8> {
        let mut h = [0u8; 12];
        write_header(&mut h, 0, seq, ts, ssrc);
        let mut p = h.to_vec();
        p.extend_from_slice(&[fill; 160]);
        p
    }

    #[test]
    fn demultiplexes_by_ssrc_and_unwraps_sequence_and_timestamp() {
        let mut r = Recorder::new(Limits {
            max_streams: 4,
            samples_per_stream: 10,
        });
        r.record(0, &packet(1, 65535, u32::MAX - 79, 0xFF));
        r.record(20, &packet(1, 0, 80, 0x00));
        r.record(5, &packet(2, 7, 0, 0xFF));
        assert_eq!(r.streams.len(), 2);
        let s = &r.streams[0];
        assert_eq!(s.samples[1].sequence, 1);
        assert_eq!(s.samples[1].timestamp, 160);
        assert_eq!(s.lost(), 0);
        assert_eq!(r.frames.silent, 2);
        assert_eq!(r.frames.audible, 1);
    }

    #[test]
    fn counts_gaps_reordering_and_caps() {
        let mut r = Recorder::new(Limits {
            max_streams: 1,
            samples_per_stream: 2,
        });
        r.record(0, &packet(9, 10, 0, 0xFF));
        r.record(1, &packet(9, 13, 480, 0xFF));
        r.record(2, &packet(9, 12, 320, 0xFF));
        r.record(3, &packet(8, 1, 0, 0xFF));
        r.record(4, b"not rtp");
        let s = &r.streams[0];
        assert_eq!(s.expected(), 4);
        assert_eq!(s.lost(), 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.overflow, 1);
        assert_eq!(r.packets_over_stream_cap, 1);
        assert_eq!(r.not_rtp, 1);
    }
}
