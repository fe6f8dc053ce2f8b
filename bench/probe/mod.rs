//! The pieces of the RTP probe: parsing, decoding, recording, analysis, and
//! the socket loops that feed them.

pub mod analysis;
pub mod g711;
pub mod listen;
pub mod pcap;
pub mod recorder;
pub mod rtp;
pub mod send;
