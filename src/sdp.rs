//! SDP offer/answer (RFC 3264) for G.711 audio and RFC 4733 telephone-event.
//! Owned by the media work; see `media` for how the answer is used.
//!
//! The parser (RFC 4566) is lenient about line order and unknown lines, and
//! strict about what negotiation needs: a connection address, an audio stream,
//! a codec we speak.

use crate::media::{Codec, StreamParams};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Largest SDP body accepted.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// Most m= lines accepted.
pub const MAX_MEDIA: usize = 16;
/// Events we accept in telephone-event (DTMF 0-15 and flash).
const TELEPHONE_EVENTS: &str = "0-16";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("SDP body larger than {MAX_SDP_BYTES} bytes")]
    TooLarge,
    #[error("no usable audio stream (m=audio with RTP/AVP and a non-zero port)")]
    NoAudio,
    #[error("no common codec: PCMU (0) or PCMA (8) required")]
    NoCommonCodec,
    #[error("no connection address (c=) for the audio stream")]
    NoConnection,
}

impl SdpError {
    /// The SIP status the call layer answers with: 400 for a body that cannot be
    /// parsed, 488 (Not Acceptable Here) when we cannot agree on media.
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::Syntax { .. } | SdpError::TooLarge => 400,
            _ => 488,
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer gives to an offered one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the offerer wants to receive our media.
    pub fn peer_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// One m= section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub protocol: String,
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    pub direction: Option<Direction>,
}

impl MediaDescription {
    fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == payload_type)
    }

    fn is_rtp_avp(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("RTP/AVP")
    }

    /// Payload types in offer order (RTP formats are numbers 0-127).
    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt <= 127)
    }
}

/// A parsed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub session_connection: Option<IpAddr>,
    pub session_direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

impl Offer {
    pub fn parse(text: &str) -> Result<Offer, SdpError> {
        if text.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge);
        }
        let mut offer = Offer {
            session_connection: None,
            session_direction: None,
            media: Vec::new(),
        };
        let mut saw_version = false;
        for (number, raw) in text.lines().enumerate() {
            let line_no = number + 1;
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let syntax = |message: &str| SdpError::Syntax {
                line: line_no,
                message: message.to_string(),
            };
            let (kind, value) = match line.split_once('=') {
                Some((kind, value)) if kind.len() == 1 => (kind, value.trim()),
                _ => return Err(syntax("expected `<letter>=<value>`")),
            };
            match kind {
                "v" => {
                    if value != "0" {
                        return Err(syntax("unsupported SDP version"));
                    }
                    saw_version = true;
                }
                "m" => {
                    if offer.media.len() >= MAX_MEDIA {
                        return Err(syntax("too many media lines"));
                    }
                    offer.media.push(parse_media_line(value).map_err(syntax)?);
                }
                "c" => {
                    let address = parse_connection(value).map_err(syntax)?;
                    match offer.media.last_mut() {
                        Some(media) => media.connection = Some(address),
                        None => offer.session_connection = Some(address),
                    }
                }
                "a" => {
                    let (name, argument) = match value.split_once(':') {
                        Some((name, argument)) => (name, Some(argument.trim())),
                        None => (value, None),
                    };
                    if let Some(direction) = Direction::from_attribute(name) {
                        match offer.media.last_mut() {
                            Some(media) => media.direction = Some(direction),
                            None => offer.session_direction = Some(direction),
                        }
                        continue;
                    }
                    let (Some(media), Some(argument)) = (offer.media.last_mut(), argument) else {
                        continue;
                    };
                    match name {
                        "rtpmap" => {
                            // A malformed rtpmap only loses that format.
                            if let Some(map) = parse_rtpmap(argument) {
                                media.rtpmaps.push(map);
                            }
                        }
                        "fmtp" => {
                            if let Some((pt, params)) = argument.split_once(' ') {
                                if let Ok(pt) = pt.parse::<u8>() {
                                    media.fmtps.push((pt, params.trim().to_string()));
                                }
                            }
                        }
                        "ptime" => media.ptime = argument.parse().ok(),
                        _ => {}
                    }
                }
                _ if kind.bytes().all(|b| b.is_ascii_lowercase()) => {}
                _ => return Err(syntax("unknown line type")),
            }
        }
        if !saw_version {
            return Err(SdpError::Syntax {
                line: 1,
                message: "missing `v=0`".into(),
            });
        }
        Ok(offer)
    }
}

fn parse_media_line(value: &str) -> Result<MediaDescription, &'static str> {
    let mut fields = value.split_ascii_whitespace();
    let media = fields.next().ok_or("m= line without media type")?;
    let port = fields.next().ok_or("m= line without port")?;
    // `<port>/<count>`: only the first port matters to us.
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or("m= line with an invalid port")?;
    let protocol = fields.next().ok_or("m= line without protocol")?;
    let formats: Vec<String> = fields.take(128).map(str::to_string).collect();
    if formats.is_empty() {
        return Err("m= line without formats");
    }
    Ok(MediaDescription {
        media: media.to_string(),
        port,
        protocol: protocol.to_string(),
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: None,
    })
}

fn parse_connection(value: &str) -> Result<IpAddr, &'static str> {
    let mut fields = value.split_ascii_whitespace();
    if fields.next() != Some("IN") {
        return Err("c= line: network type must be IN");
    }
    let family = fields.next().ok_or("c= line without address type")?;
    let address = fields.next().ok_or("c= line without address")?;
    // Multicast TTL / count suffixes are cut off.
    let address = address.split('/').next().unwrap_or(address);
    let ip: IpAddr = address
        .parse()
        .map_err(|_| "c= line: not an IP address (host names are not supported)")?;
    match (family, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err("c= line: address does not match its type"),
    }
}

fn parse_rtpmap(argument: &str) -> Option<RtpMap> {
    let (pt, rest) = argument.split_once(' ')?;
    let payload_type = pt.parse::<u8>().ok().filter(|pt| *pt <= 127)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

/// What we agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// Where the offerer receives audio (`0.0.0.0` when it holds the call).
    pub remote: SocketAddr,
    /// The offer's direction for the audio stream.
    pub direction: Direction,
    /// Which m= line is the audio we use.
    pub audio_index: usize,
    /// Every offered m= line, to answer in the same order (others with port 0).
    pub offered: Vec<OfferedMedia>,
}

/// Just enough of an offered m= line to reject it in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    pub media: String,
    pub protocol: String,
    pub first_format: String,
}

impl Negotiated {
    /// What the pacer needs. Hold (sendonly, inactive or `c=0.0.0.0`) stops sending.
    pub fn stream_params(&self) -> StreamParams {
        StreamParams {
            remote: self.remote,
            codec: self.codec,
            telephone_event_pt: self.telephone_event_pt,
            send: self.direction.peer_receives() && !self.remote.ip().is_unspecified(),
        }
    }

    pub fn answer(&self) -> Answer {
        Answer {
            codec: self.codec,
            telephone_event_pt: self.telephone_event_pt,
            direction: self.direction.answer(),
            audio_index: self.audio_index,
            offered: self.offered.clone(),
        }
    }
}

/// An offer as text, parsed and negotiated (see [`negotiate`]).
pub fn negotiate_text(offer: &str) -> Result<Negotiated, SdpError> {
    Offer::parse(offer).and_then(|o| negotiate(&o))
}

/// Picks the first audio stream we can serve and the first codec of the offer
/// (in its order) that we speak.
pub fn negotiate(offer: &Offer) -> Result<Negotiated, SdpError> {
    negotiate_with(offer, codec_for)
}

/// The first usable audio stream, with the first format `choose` accepts.
fn negotiate_with<F>(offer: &Offer, choose: F) -> Result<Negotiated, SdpError>
where
    F: Fn(&MediaDescription, u8) -> Option<Codec>,
{
    let mut result = Err(SdpError::NoAudio);
    for (index, media) in offer.media.iter().enumerate() {
        if !media.media.eq_ignore_ascii_case("audio") || !media.is_rtp_avp() || media.port == 0 {
            continue;
        }
        let Some(codec) = media.payload_types().find_map(|pt| choose(media, pt)) else {
            result = Err(SdpError::NoCommonCodec);
            continue;
        };
        let telephone_event_pt = media.payload_types().find(|&pt| {
            media.rtpmap(pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        });
        let address = media
            .connection
            .or(offer.session_connection)
            .ok_or(SdpError::NoConnection)?;
        let direction = media
            .direction
            .or(offer.session_direction)
            .unwrap_or(Direction::SendRecv);
        let offered = offer
            .media
            .iter()
            .map(|m| OfferedMedia {
                media: m.media.clone(),
                protocol: m.protocol.clone(),
                first_format: m.formats.first().cloned().unwrap_or_else(|| "0".into()),
            })
            .collect();
        return Ok(Negotiated {
            codec,
            telephone_event_pt,
            remote: SocketAddr::new(address, media.port),
            direction,
            audio_index: index,
            offered,
        });
    }
    result
}

/// PCMU/PCMA at their static payload types; an rtpmap, if present, must agree.
fn codec_for(media: &MediaDescription, pt: u8) -> Option<Codec> {
    let codec = match pt {
        0 => Codec::Pcmu,
        8 => Codec::Pcma,
        _ => return None,
    };
    match media.rtpmap(pt) {
        None => Some(codec),
        Some(map) => (map.encoding.eq_ignore_ascii_case(codec.name())
            && map.clock_rate == 8000
            && map.channels.unwrap_or(1) == 1)
            .then_some(codec),
    }
}

/// Our answer, rendered once the local port is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    pub direction: Direction,
    pub audio_index: usize,
    pub offered: Vec<OfferedMedia>,
}

impl Answer {
    /// The SDP text. `session_id` stays the same for the whole call and
    /// `session_version` goes up by one with every new answer (RFC 3264 §8).
    pub fn render(
        &self,
        local_ip: IpAddr,
        local_port: u16,
        session_id: u64,
        session_version: u64,
    ) -> String {
        let family = address_family(local_ip);
        let mut sdp = String::with_capacity(320);
        // Writing to a String cannot fail.
        let _ = write!(
            sdp,
            "v=0\r\no=hotline {session_id} {session_version} IN {family} {local_ip}\r\n\
             s=hotline\r\nc=IN {family} {local_ip}\r\nt=0 0\r\n"
        );
        for (index, offered) in self.offered.iter().enumerate() {
            if index != self.audio_index {
                let _ = write!(
                    sdp,
                    "m={} 0 {} {}\r\n",
                    offered.media, offered.protocol, offered.first_format
                );
                continue;
            }
            let pt = self.codec.payload_type();
            let _ = write!(sdp, "m=audio {local_port} RTP/AVP {pt}");
            if let Some(te) = self.telephone_event_pt {
                let _ = write!(sdp, " {te}");
            }
            let _ = write!(sdp, "\r\na=rtpmap:{pt} {}/8000\r\n", self.codec.name());
            if let Some(te) = self.telephone_event_pt {
                let _ = write!(
                    sdp,
                    "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} {TELEPHONE_EVENTS}\r\n"
                );
            }
            let _ = write!(sdp, "a=ptime:20\r\na={}\r\n", self.direction.attribute());
        }
        sdp
    }
}

/// Our offer for a call we place (an agent's softphone): one audio stream with
/// `codecs` in our order of preference (PCMU then PCMA when empty) and, if
/// given, telephone-event. `session_id` and `session_version` as for
/// [`Answer::render`].
pub fn offer(
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    session_version: u64,
    codecs: &[Codec],
    telephone_event_pt: Option<u8>,
) -> String {
    let mut ours: Vec<Codec> = Vec::with_capacity(2);
    for &codec in codecs {
        if !ours.contains(&codec) {
            ours.push(codec);
        }
    }
    if ours.is_empty() {
        ours = vec![Codec::Pcmu, Codec::Pcma];
    }
    // A dynamic number that collides with a static codec cannot be offered.
    let te = telephone_event_pt.filter(|pt| (96..=127).contains(pt));
    let family = address_family(local_ip);
    let mut sdp = String::with_capacity(320);
    let _ = write!(
        sdp,
        "v=0\r\no=hotline {session_id} {session_version} IN {family} {local_ip}\r\n\
         s=hotline\r\nc=IN {family} {local_ip}\r\nt=0 0\r\nm=audio {local_port} RTP/AVP"
    );
    for codec in &ours {
        let _ = write!(sdp, " {}", codec.payload_type());
    }
    if let Some(te) = te {
        let _ = write!(sdp, " {te}");
    }
    sdp.push_str("\r\n");
    for codec in &ours {
        let _ = write!(
            sdp,
            "a=rtpmap:{} {}/8000\r\n",
            codec.payload_type(),
            codec.name()
        );
    }
    if let Some(te) = te {
        let _ = write!(
            sdp,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} {TELEPHONE_EVENTS}\r\n"
        );
    }
    sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
    sdp
}

/// Reads the answer to an [`offer`] of ours: the codec is the first of the
/// answer's formats that we offered, the telephone-event type is the answer's,
/// and `direction` is the answerer's own (so `stream_params` holds when it
/// answers sendonly or inactive).
pub fn accept_answer(
    our_offer_codecs: &[Codec],
    answer_text: &str,
) -> Result<Negotiated, SdpError> {
    let parsed = Offer::parse(answer_text)?;
    let offered_default = [Codec::Pcmu, Codec::Pcma];
    let ours = if our_offer_codecs.is_empty() {
        &offered_default[..]
    } else {
        our_offer_codecs
    };
    negotiate_with(&parsed, |media, pt| {
        codec_for(media, pt).filter(|codec| ours.contains(codec))
    })
}

fn address_family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of sipp's `uac_pcap` scenario INVITE.
    const SIPP_OFFER: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 8 101\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n";

    /// A softphone offering many codecs, PCMU after opus, plus video.
    const LINPHONE_OFFER: &str = "v=0\n\
        o=alice 1234 678 IN IP4 192.168.1.20\n\
        s=Talk\n\
        c=IN IP4 192.168.1.20\n\
        t=0 0\n\
        a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\n\
        m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\n\
        a=rtpmap:96 opus/48000/2\n\
        a=fmtp:96 useinbandfec=1\n\
        a=rtpmap:97 speex/16000\n\
        a=rtpmap:98 speex/8000\n\
        a=rtpmap:18 G729/8000\n\
        a=rtpmap:101 Telephone-Event/8000\n\
        a=rtpmap:99 telephone-event/48000\n\
        a=rtpmap:100 telephone-event/16000\n\
        a=rtcp-fb:* trr-int 1000\n\
        m=video 9078 RTP/AVP 96 97\n\
        a=rtpmap:96 VP8/90000\n\
        a=rtpmap:97 H264/90000\n";

    fn negotiated(text: &str) -> Negotiated {
        negotiate(&Offer::parse(text).expect("parses")).expect("negotiates")
    }

    #[test]
    fn answers_the_sipp_offer() {
        let n = negotiated(SIPP_OFFER);
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().expect("addr"));
        let params = n.stream_params();
        assert!(params.send);
        assert_eq!(params.codec, Codec::Pcma);
        let sdp = n
            .answer()
            .render("10.0.0.5".parse().expect("ip"), 20000, 42, 1);
        assert_eq!(
            sdp,
            "v=0\r\no=hotline 42 1 IN IP4 10.0.0.5\r\ns=hotline\r\nc=IN IP4 10.0.0.5\r\n\
             t=0 0\r\nm=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        // The answer parses as an offer would.
        assert!(Offer::parse(&sdp).is_ok());
    }

    #[test]
    fn chooses_by_offer_order_and_rejects_video() {
        let n = negotiated(LINPHONE_OFFER);
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote, "192.168.1.20:7078".parse().expect("addr"));
        let sdp = n
            .answer()
            .render("10.0.0.5".parse().expect("ip"), 20002, 7, 2);
        assert!(sdp.contains("m=audio 20002 RTP/AVP 0 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(sdp.ends_with("m=video 0 RTP/AVP 96\r\n"), "{sdp}");
        assert!(sdp.contains("o=hotline 7 2 IN IP4"));

        let pcma_first = negotiated(&SIPP_OFFER.replace("RTP/AVP 8 101", "RTP/AVP 8 0 101"));
        assert_eq!(pcma_first.codec, Codec::Pcma);
        let pcmu_first = negotiated(&SIPP_OFFER.replace("RTP/AVP 8 101", "RTP/AVP 0 8"));
        assert_eq!(pcmu_first.codec, Codec::Pcmu);
        assert_eq!(pcmu_first.telephone_event_pt, None);
    }

    #[test]
    fn baresip_style_with_media_level_connection_and_ipv6() {
        let offer = "v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nt=0 0\r\n\
            m=audio 10000 RTP/AVP 9 0 101\r\nc=IN IP6 2001:db8::7\r\n\
            a=rtpmap:9 G722/8000\r\na=rtpmap:0 pcmu/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
            a=ptime:20\r\na=sendrecv\r\n";
        let n = negotiated(offer);
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.remote, "[2001:db8::7]:10000".parse().expect("addr"));
        let sdp = n
            .answer()
            .render("2001:db8::1".parse().expect("ip"), 20000, 1, 1);
        assert!(sdp.contains("c=IN IP6 2001:db8::1\r\n"));
    }

    #[test]
    fn hold_and_resume_re_invites() {
        let sendonly = negotiated(&format!("{SIPP_OFFER}a=sendonly\r\n"));
        assert!(!sendonly.stream_params().send);
        assert!(sendonly
            .answer()
            .render("10.0.0.5".parse().expect("ip"), 1, 1, 2)
            .contains("a=recvonly\r\n"));

        let inactive = negotiated(&format!("{SIPP_OFFER}a=inactive\r\n"));
        assert!(!inactive.stream_params().send);
        assert_eq!(inactive.answer().direction, Direction::Inactive);

        let recvonly = negotiated(&format!("{SIPP_OFFER}a=recvonly\r\n"));
        assert!(recvonly.stream_params().send);
        assert_eq!(recvonly.answer().direction, Direction::SendOnly);

        // RFC 2543 style hold: address 0.0.0.0.
        let zero = negotiated(&SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"));
        assert!(!zero.stream_params().send);

        // Session-level direction applies when the media has none.
        let session = SIPP_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
        assert!(!negotiated(&session).stream_params().send);

        // Resume to a new address.
        let moved = negotiated(
            &SIPP_OFFER
                .replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.2")
                .replace("m=audio 6000", "m=audio 6002"),
        );
        assert!(moved.stream_params().send);
        assert_eq!(moved.remote, "127.0.0.2:6002".parse().expect("addr"));
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let g729 = SIPP_OFFER
            .replace("RTP/AVP 8 101", "RTP/AVP 18 101")
            .replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000");
        let err = negotiate(&Offer::parse(&g729).expect("parses")).expect_err("no codec");
        assert_eq!(err, SdpError::NoCommonCodec);
        assert_eq!(err.status_code(), 488);

        // A static number remapped to something else is not PCMA.
        let remapped = SIPP_OFFER.replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:8 opus/48000/2");
        assert_eq!(
            negotiate(&Offer::parse(&remapped).expect("parses")),
            Err(SdpError::NoCommonCodec)
        );

        let no_c = SIPP_OFFER.replace("c=IN IP4 127.0.0.1\r\n", "");
        assert_eq!(
            negotiate(&Offer::parse(&no_c).expect("parses")),
            Err(SdpError::NoConnection)
        );

        let video_only = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\n";
        assert_eq!(
            negotiate(&Offer::parse(video_only).expect("parses")),
            Err(SdpError::NoAudio)
        );
        let srtp = SIPP_OFFER.replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(
            negotiate(&Offer::parse(&srtp).expect("parses")),
            Err(SdpError::NoAudio)
        );
        let disabled = SIPP_OFFER.replace("m=audio 6000", "m=audio 0");
        assert_eq!(
            negotiate(&Offer::parse(&disabled).expect("parses")),
            Err(SdpError::NoAudio)
        );
    }

    #[test]
    fn garbage_is_a_syntax_error_not_a_panic() {
        for text in [
            "",
            "hello world",
            "v=1\r\n",
            "v=0\r\nm=audio\r\n",
            "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
            "v=0\r\nm=audio 5000 RTP/AVP\r\n",
            "v=0\r\nc=IN IP4 not-an-ip\r\n",
            "v=0\r\nc=IN IP6 1.2.3.4\r\n",
            "v=0\r\nc=XX IP4 1.2.3.4\r\n",
            "v=0\r\nXY=1\r\n",
            "v=0\r\n=\r\n",
        ] {
            let err = Offer::parse(text).expect_err(text);
            assert_eq!(err.status_code(), 400, "{text}");
        }
        assert_eq!(
            Offer::parse(&"a".repeat(MAX_SDP_BYTES + 1)),
            Err(SdpError::TooLarge)
        );
        // Malformed attributes are skipped, not fatal.
        let odd = format!("{SIPP_OFFER}a=rtpmap:xx\r\na=fmtp:\r\na=ptime:abc\r\na=rtpmap:101\r\n");
        assert_eq!(negotiated(&odd).codec, Codec::Pcma);
        // Arbitrary bytes never panic.
        let mut seed = 0x2545_F491_u32;
        for _ in 0..2000 {
            let text: String = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let alphabet = b"v=0\r\nmac IP4 RTP/AVP 0 8 101:/ -";
                    char::from(alphabet[seed as usize % alphabet.len()])
                })
                .collect();
            if let Ok(offer) = Offer::parse(&text) {
                let _ = negotiate(&offer);
            }
        }
    }

    #[test]
    fn our_offer_lists_codecs_in_order_and_reads_back() {
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        let sdp = offer(
            ip,
            20004,
            9,
            1,
            &[Codec::Pcma, Codec::Pcmu, Codec::Pcma],
            Some(101),
        );
        assert_eq!(
            sdp,
            "v=0\r\no=hotline 9 1 IN IP4 10.0.0.5\r\ns=hotline\r\nc=IN IP4 10.0.0.5\r\n\
             t=0 0\r\nm=audio 20004 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        // Our own parser, as the agent's side, accepts it.
        let n = negotiated(&sdp);
        assert_eq!((n.codec, n.telephone_event_pt), (Codec::Pcma, Some(101)));
        // No codecs means both; a static number is no telephone-event type.
        let plain = offer(ip, 20004, 9, 2, &[], Some(8));
        assert!(plain.contains("m=audio 20004 RTP/AVP 0 8\r\n"), "{plain}");
        assert!(!plain.contains("telephone-event"));
    }

    /// RFC 3264 §10.1, with the host names replaced by documentation addresses
    /// (names in c= are not supported).
    #[test]
    fn accepts_the_rfc_3264_answer() {
        let answer = "v=0\r\n\
            o=bob 2808844564 2808844564 IN IP4 192.0.2.20\r\n\
            s=\r\n\
            c=IN IP4 192.0.2.20\r\n\
            t=0 0\r\n\
            m=audio 49174 RTP/AVP 0\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            m=video 49170 RTP/AVP 32\r\n\
            a=rtpmap:32 MPV/90000\r\n";
        let n = accept_answer(&[Codec::Pcmu, Codec::Pcma], answer).expect("accepted");
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_pt, None);
        assert_eq!(n.remote, "192.0.2.20:49174".parse().expect("addr"));
        assert!(n.stream_params().send);
        // We offered PCMA alone: PCMU in the answer is not ours.
        assert_eq!(
            accept_answer(&[Codec::Pcma], answer),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn answer_codec_event_type_and_hold() {
        let answer = |formats: &str, extra: &str| {
            format!(
                "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 7078 RTP/AVP {formats}\r\na=rtpmap:96 telephone-event/8000\r\n{extra}"
            )
        };
        // First of the answer's formats that we offered.
        let n = accept_answer(&[Codec::Pcmu], &answer("8 0 96", "")).expect("ok");
        assert_eq!((n.codec, n.telephone_event_pt), (Codec::Pcmu, Some(96)));
        let n = accept_answer(&[Codec::Pcmu, Codec::Pcma], &answer("8 0", "")).expect("ok");
        assert_eq!((n.codec, n.telephone_event_pt), (Codec::Pcma, None));
        // The agent answers on hold: nothing to send.
        let held = accept_answer(&[Codec::Pcmu], &answer("0", "a=sendonly\r\n")).expect("ok");
        assert_eq!(held.direction, Direction::SendOnly);
        assert!(!held.stream_params().send);
        let recv = accept_answer(&[Codec::Pcmu], &answer("0", "a=recvonly\r\n")).expect("ok");
        assert!(recv.stream_params().send);
        // Refused stream, no common codec, garbage.
        let refused = answer("0", "").replace("m=audio 7078", "m=audio 0");
        assert_eq!(
            accept_answer(&[Codec::Pcmu], &refused),
            Err(SdpError::NoAudio)
        );
        assert_eq!(
            accept_answer(&[Codec::Pcmu], &answer("18", "")),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            accept_answer(&[Codec::Pcmu], "not sdp").map_err(|e| e.status_code()),
            Err(400)
        );
    }
}
