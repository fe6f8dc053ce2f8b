//! RFC 4028 session timers, sans-IO: the `Session-Expires` and `Min-SE`
//! headers, what a UAS answers to an INVITE or UPDATE that asks for (or does
//! not ask for) a session timer, what a UAC reads from the 2xx, and the clock
//! of one session: who refreshes, when, and when the session counts as expired.
//!
//! Why: a peer that vanishes without a BYE (power cut, network gone) would
//! otherwise leave an agent "on call" until RTP silence is noticed; with a
//! session timer either we refresh (and a refresh without answer ends the call)
//! or the peer must, and no refresh by the deadline ends it.
//!
//! `uac`/`uas` in `refresher=` name roles in the transaction that carried the
//! header, not in the dialog; `Side` turns them into "us" or "the peer" for one
//! transaction (see `Refresher::side`).

use std::time::{Duration, Instant};

/// RFC 4028 4: nobody may ask for a Min-SE below 90 seconds.
pub const MIN_SE_FLOOR: u32 = 90;
/// RFC 4028 10: the non-refresher ends the session this long before it
/// expires at most (else a third of the interval).
const EXPIRY_MARGIN_MAX_S: u64 = 32;
/// Intervals beyond a day are taken as a day (keeps `Instant` arithmetic sane
/// whatever a peer writes).
const MAX_INTERVAL_S: u32 = 86_400;

/// The `refresher` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// Who refreshes a session, from our point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Us,
    Peer,
}

impl Refresher {
    /// The side that refreshes, given whether we were the UAC of the
    /// transaction that carried the parameter.
    pub fn side(self, we_are_uac: bool) -> Side {
        match (self, we_are_uac) {
            (Refresher::Uac, true) | (Refresher::Uas, false) => Side::Us,
            (Refresher::Uac, false) | (Refresher::Uas, true) => Side::Peer,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value (RFC 4028 4): `delta-seconds *(;se-params)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub interval: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses a header value; `None` when it is not delta-seconds with
    /// parameters. Unknown parameters are ignored, an unknown `refresher`
    /// value is treated as absent.
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';');
        let interval = delta_seconds(parts.next()?)?;
        let mut refresher = None;
        for param in parts {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                let val = val.trim();
                refresher = if val.eq_ignore_ascii_case("uac") {
                    Some(Refresher::Uac)
                } else if val.eq_ignore_ascii_case("uas") {
                    Some(Refresher::Uas)
                } else {
                    None
                };
            }
        }
        Some(SessionExpires {
            interval,
            refresher,
        })
    }

    /// The header value, e.g. `1800;refresher=uac`.
    pub fn format(&self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.interval, r.as_str()),
            None => self.interval.to_string(),
        }
    }
}

/// Parses a `Min-SE` value (delta-seconds, generic parameters ignored).
pub fn parse_min_se(value: &str) -> Option<u32> {
    delta_seconds(value.split(';').next()?)
}

/// `1*DIGIT`, saturated at `MAX_INTERVAL_S`; zero is refused (RFC 4028 does
/// not forbid it, but a session that expires at once is no session).
fn delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: a value too long for u64 is simply very large.
    let value = text.parse::<u64>().unwrap_or(u64::MAX);
    u32::try_from(value.min(u64::from(MAX_INTERVAL_S)))
        .ok()
        .filter(|v| *v > 0)
}

/// Whether a list header (`Supported`, `Require`) names an option tag.
pub fn lists_tag<'a>(values: impl IntoIterator<Item = &'a str>, tag: &str) -> bool {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// Our settings: what we ask for and the least we accept (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub session_expires: u32,
    pub min_se: u32,
}

impl Default for TimerConfig {
    /// RFC 4028 4 recommends 1800 s; 90 s is the smallest Min-SE allowed.
    fn default() -> TimerConfig {
        TimerConfig {
            session_expires: 1800,
            min_se: MIN_SE_FLOOR,
        }
    }
}

/// What a request (INVITE, re-INVITE, UPDATE) said about session timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerRequest {
    pub session_expires: Option<SessionExpires>,
    pub min_se: Option<u32>,
    /// `Supported: timer` (or `Require: timer`).
    pub supported: bool,
    /// Whether we may refresh with UPDATE: the request has no `Allow`, or
    /// its `Allow` lists UPDATE.
    pub allows_update: bool,
}

impl TimerRequest {
    /// Reads the headers through a lookup by name (every value of it).
    pub fn read<'a, F, I>(headers: F) -> TimerRequest
    where
        F: Fn(&'static str) -> I,
        I: Iterator<Item = &'a str>,
    {
        TimerRequest {
            session_expires: headers("Session-Expires")
                .next()
                .and_then(SessionExpires::parse),
            min_se: headers("Min-SE").next().and_then(parse_min_se),
            supported: lists_tag(headers("Supported"), "timer")
                || lists_tag(headers("Require"), "timer"),
            allows_update: headers("Allow").next().is_none()
                || lists_tag(headers("Allow"), "UPDATE"),
        }
    }
}

/// The UAS decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// 422 Session Interval Too Small with `Min-SE: min_se`.
    TooSmall { min_se: u32 },
    /// 2xx with `Session-Expires: session.format()`, plus `Require: timer`
    /// when `require_timer`; the session runs with `refresher` doing refreshes.
    Accept {
        session: SessionExpires,
        require_timer: bool,
        refresher: Side,
    },
    /// 2xx without `Session-Expires`: the UAC cannot refresh (no timer
    /// support) and we could not either (its `Allow` leaves out UPDATE).
    NoTimer,
}

/// RFC 4028 9: the UAS answer to a session refresh or initial INVITE.
///
/// - A `Session-Expires` below our Min-SE gets 422 with our Min-SE.
/// - The interval is the request's (or ours when it has none), lowered to our
///   `session_expires` but never below the request's Min-SE or our own.
/// - Refresher: the request's when the UAC supports timers; else we choose
///   `uac` (the caller proves it is alive); a UAC without timer support
///   cannot refresh, so then it is `uas` (us) and no `Require: timer`; if
///   its `Allow` leaves out UPDATE, no session timer at all (we refresh only
///   with UPDATE, and an unanswered refresh would end a healthy call).
pub fn uas_negotiate(request: &TimerRequest, ours: &TimerConfig) -> UasDecision {
    if let Some(se) = request.session_expires {
        if se.interval < ours.min_se {
            return UasDecision::TooSmall {
                min_se: ours.min_se,
            };
        }
    }
    let floor = ours.min_se.max(request.min_se.unwrap_or(0));
    let asked = request
        .session_expires
        .map_or(ours.session_expires, |se| se.interval);
    let interval = asked.min(ours.session_expires).max(floor);
    let refresher = if request.supported {
        request
            .session_expires
            .and_then(|se| se.refresher)
            .unwrap_or(Refresher::Uac)
    } else if request.allows_update {
        Refresher::Uas
    } else {
        return UasDecision::NoTimer;
    };
    UasDecision::Accept {
        session: SessionExpires {
            interval,
            refresher: Some(refresher),
        },
        require_timer: request.supported,
        refresher: refresher.side(false),
    }
}

/// RFC 4028 7.1: the headers of a request we send (INVITE to an agent, our
/// refresh), with us offering to refresh only when asked to (`refresher`).
pub fn uac_headers(ours: &TimerConfig, session: Option<SessionExpires>) -> Vec<(String, String)> {
    let se = session.unwrap_or(SessionExpires {
        interval: ours.session_expires,
        refresher: None,
    });
    vec![
        ("Supported".to_string(), "timer".to_string()),
        ("Session-Expires".to_string(), se.format()),
        ("Min-SE".to_string(), ours.min_se.to_string()),
    ]
}

/// RFC 4028 7.2: what a 2xx to our INVITE or refresh means. `None`: no
/// session timer (the response has no usable `Session-Expires`). A missing
/// `refresher` means us: we asked, so refreshing ourselves is always safe.
pub fn uac_read_2xx(session_expires: Option<&str>) -> Option<(u32, Side)> {
    let se = SessionExpires::parse(session_expires?)?;
    let side = se.refresher.map_or(Side::Us, |r| r.side(true));
    Some((se.interval, side))
}

/// What a due session timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// We are the refresher: send a refresh now (UPDATE without SDP).
    Refresh,
    /// The peer is the refresher and did not refresh in time: end the session.
    Expired,
}

/// The clock of one session (RFC 4028 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    interval: Duration,
    refresher: Side,
    /// When the current interval started (last refresh).
    since: Instant,
    /// Our refresh is out and unanswered: nothing more to do until it ends.
    refreshing: bool,
}

impl SessionTimer {
    pub fn new(now: Instant, interval_s: u32, refresher: Side) -> SessionTimer {
        SessionTimer {
            interval: Duration::from_secs(u64::from(interval_s.min(MAX_INTERVAL_S))),
            refresher,
            since: now,
            refreshing: false,
        }
    }

    /// A refresh succeeded (theirs arrived, or ours got a 2xx): a new interval.
    pub fn refreshed(&mut self, now: Instant, interval_s: u32, refresher: Side) {
        *self = SessionTimer::new(now, interval_s, refresher);
    }

    pub fn refresher(&self) -> Side {
        self.refresher
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When to act: the refresher at half the interval; the other side at
    /// `interval - min(32 s, interval / 3)`. `None` while our refresh is out
    /// (its transaction has its own timeout).
    pub fn deadline(&self) -> Option<Instant> {
        if self.refreshing {
            return None;
        }
        let after = match self.refresher {
            Side::Us => self.interval / 2,
            Side::Peer => {
                let margin = (self.interval / 3).min(Duration::from_secs(EXPIRY_MARGIN_MAX_S));
                self.interval.saturating_sub(margin)
            }
        };
        Some(self.since + after)
    }

    /// Runs the timer; what to do when it is due.
    pub fn poll(&mut self, now: Instant) -> Option<TimerAction> {
        let due = self.deadline().is_some_and(|d| d <= now);
        if !due {
            return None;
        }
        match self.refresher {
            Side::Us => {
                self.refreshing = true;
                Some(TimerAction::Refresh)
            }
            Side::Peer => Some(TimerAction::Expired),
        }
    }

    /// Our refresh got an answer that is neither 2xx nor a sign the peer has
    /// gone (e.g. 405 from a phone without UPDATE): keep refreshing at the
    /// same interval, taking a larger one if the peer asked (422 `Min-SE`).
    pub fn refresh_declined(&mut self, now: Instant, min_se: Option<u32>) {
        let asked = min_se.map_or(0, |m| u64::from(m.min(MAX_INTERVAL_S)));
        let secs = self.interval.as_secs().max(asked);
        self.interval = Duration::from_secs(secs);
        self.since = now;
        self.refreshing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn se(value: &str) -> SessionExpires {
        SessionExpires::parse(value).expect(value)
    }

    fn request(se_value: Option<&str>, min_se: Option<u32>, supported: bool) -> TimerRequest {
        TimerRequest {
            session_expires: se_value.map(se),
            min_se,
            supported,
            allows_update: true,
        }
    }

    const OURS: TimerConfig = TimerConfig {
        session_expires: 1800,
        min_se: 90,
    };

    #[test]
    fn session_expires_parses_and_formats() {
        assert_eq!(
            se("4000;refresher=uac"),
            SessionExpires {
                interval: 4000,
                refresher: Some(Refresher::Uac)
            }
        );
        assert_eq!(
            se(" 1800 ; Refresher = UAS ").refresher,
            Some(Refresher::Uas)
        );
        assert_eq!(se("90;foo=bar").refresher, None);
        assert_eq!(se("90;refresher=proxy").refresher, None);
        assert_eq!(se("4000;refresher=uac").format(), "4000;refresher=uac");
        assert_eq!(se("1800").format(), "1800");
        for bad in ["", "abc", "-5", "1.5", "0", ";refresher=uac", "12 34"] {
            assert_eq!(SessionExpires::parse(bad), None, "{bad:?}");
        }
        assert_eq!(se("99999999999999999999").interval, MAX_INTERVAL_S);
    }

    #[test]
    fn min_se_parses() {
        assert_eq!(parse_min_se("90"), Some(90));
        assert_eq!(parse_min_se(" 3600;x=y"), Some(3600));
        assert_eq!(parse_min_se("soon"), None);
    }

    #[test]
    fn compact_form_reaches_the_same_header() {
        // The wire layer expands `x` to `Session-Expires`; reading goes by name.
        let msg = "INVITE sip:1000@h SIP/2.0\r\nVia: SIP/2.0/UDP a:5060;branch=z9hG4bK1\r\n\
                   From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x1\r\nCSeq: 1 INVITE\r\n\
                   x: 1200;refresher=uac\r\nk: 100rel, timer\r\nContent-Length: 0\r\n\r\n";
        let crate::sip::wire::Decoded::Message(m) =
            crate::sip::wire::decode(msg.as_bytes(), crate::sip::wire::Framing::Datagram, 65535)
        else {
            panic!("not decoded");
        };
        let r = TimerRequest::read(|name| m.headers_named(name));
        assert_eq!(r.session_expires, Some(se("1200;refresher=uac")));
        assert!(r.supported);
        assert!(r.allows_update, "no Allow: UPDATE not ruled out");
    }

    #[test]
    fn option_tags_in_lists() {
        assert!(lists_tag(["100rel, Timer"], "timer"));
        assert!(lists_tag(["replaces", "timer"], "timer"));
        assert!(!lists_tag(["timers"], "timer"));
    }

    #[test]
    fn too_small_interval_gets_422_with_our_min_se() {
        assert_eq!(
            uas_negotiate(&request(Some("30"), None, true), &OURS),
            UasDecision::TooSmall { min_se: 90 }
        );
        // Exactly the minimum is fine.
        assert!(matches!(
            uas_negotiate(&request(Some("90"), None, true), &OURS),
            UasDecision::Accept { session, .. } if session.interval == 90
        ));
    }

    #[test]
    fn uas_keeps_the_uacs_refresher_and_requires_timer() {
        let d = uas_negotiate(&request(Some("120;refresher=uac"), None, true), &OURS);
        assert_eq!(
            d,
            UasDecision::Accept {
                session: se("120;refresher=uac"),
                require_timer: true,
                refresher: Side::Peer,
            }
        );
        let d = uas_negotiate(&request(Some("120;refresher=uas"), None, true), &OURS);
        assert!(
            matches!(d, UasDecision::Accept { refresher: Side::Us, session, .. }
            if session.refresher == Some(Refresher::Uas))
        );
    }

    #[test]
    fn uas_chooses_uac_when_the_uac_supports_timer_and_left_it_open() {
        let d = uas_negotiate(&request(Some("600"), None, true), &OURS);
        assert_eq!(
            d,
            UasDecision::Accept {
                session: se("600;refresher=uac"),
                require_timer: true,
                refresher: Side::Peer,
            }
        );
    }

    #[test]
    fn uac_without_timer_support_leaves_refreshing_to_us_without_require() {
        // RFC 4028 9: the table's first row.
        let d = uas_negotiate(&request(Some("600;refresher=uac"), None, false), &OURS);
        assert_eq!(
            d,
            UasDecision::Accept {
                session: se("600;refresher=uas"),
                require_timer: false,
                refresher: Side::Us,
            }
        );
        // No Session-Expires at all: we insert ours.
        let d = uas_negotiate(&request(None, None, false), &OURS);
        assert!(
            matches!(d, UasDecision::Accept { session, refresher: Side::Us, .. }
            if session.interval == 1800)
        );
        // ... unless it cannot take our UPDATE refreshes.
        let no_update = TimerRequest {
            allows_update: false,
            ..request(None, None, false)
        };
        assert_eq!(uas_negotiate(&no_update, &OURS), UasDecision::NoTimer);
        // A UAC with timer support refreshes itself whatever it allows.
        let refreshing = TimerRequest {
            allows_update: false,
            ..request(Some("600"), None, true)
        };
        assert!(matches!(
            uas_negotiate(&refreshing, &OURS),
            UasDecision::Accept {
                refresher: Side::Peer,
                ..
            }
        ));
    }

    #[test]
    fn uas_lowers_a_long_interval_but_never_below_a_min_se() {
        let d = uas_negotiate(&request(Some("7200"), None, true), &OURS);
        assert!(matches!(d, UasDecision::Accept { session, .. } if session.interval == 1800));
        // RFC 4028 9: not below the request's Min-SE.
        let d = uas_negotiate(&request(Some("7200"), Some(3600), true), &OURS);
        assert!(matches!(d, UasDecision::Accept { session, .. } if session.interval == 3600));
        // Without Session-Expires the request's Min-SE still bounds ours.
        let small = TimerConfig {
            session_expires: 100,
            min_se: 90,
        };
        let d = uas_negotiate(&request(None, Some(300), true), &small);
        assert!(matches!(d, UasDecision::Accept { session, .. } if session.interval == 300));
    }

    #[test]
    fn rfc_4028_example_flow_uas_side() {
        // RFC 4028 11 (example call flow): INVITE with Session-Expires: 50
        // answered 422 Min-SE: 3600 by a UAS wanting 3600; the retry with
        // Session-Expires: 3600 and Min-SE: 3600 is accepted at 3600, and the
        // UAC, leaving the refresher open, is made the refresher.
        let uas = TimerConfig {
            session_expires: 3600,
            min_se: 3600,
        };
        assert_eq!(
            uas_negotiate(&request(Some("50"), None, true), &uas),
            UasDecision::TooSmall { min_se: 3600 }
        );
        let d = uas_negotiate(&request(Some("3600"), Some(3600), true), &uas);
        assert_eq!(
            d,
            UasDecision::Accept {
                session: se("3600;refresher=uac"),
                require_timer: true,
                refresher: Side::Peer,
            }
        );
    }

    #[test]
    fn uac_offers_timer_and_reads_the_answer() {
        let h = uac_headers(&OURS, None);
        assert!(h.contains(&("Supported".into(), "timer".into())));
        assert!(h.contains(&("Session-Expires".into(), "1800".into())));
        assert!(h.contains(&("Min-SE".into(), "90".into())));
        assert_eq!(
            uac_read_2xx(Some("1800;refresher=uac")),
            Some((1800, Side::Us))
        );
        assert_eq!(
            uac_read_2xx(Some("900;refresher=uas")),
            Some((900, Side::Peer))
        );
        assert_eq!(uac_read_2xx(Some("900")), Some((900, Side::Us)));
        // RFC 4028 7.2: no Session-Expires in the 2xx, no session timer.
        assert_eq!(uac_read_2xx(None), None);
        assert_eq!(uac_read_2xx(Some("garbage")), None);
    }

    #[test]
    fn refresher_maps_roles_per_transaction() {
        assert_eq!(Refresher::Uac.side(true), Side::Us);
        assert_eq!(Refresher::Uac.side(false), Side::Peer);
        assert_eq!(Refresher::Uas.side(true), Side::Peer);
        assert_eq!(Refresher::Uas.side(false), Side::Us);
    }

    #[test]
    fn the_refresher_refreshes_at_half_the_interval() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 1800, Side::Us);
        assert_eq!(t.deadline(), Some(t0 + Duration::from_secs(900)));
        assert_eq!(t.poll(t0 + Duration::from_secs(899)), None);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(900)),
            Some(TimerAction::Refresh)
        );
        // One refresh out at a time.
        assert_eq!(t.deadline(), None);
        assert_eq!(t.poll(t0 + Duration::from_secs(2000)), None);
        // Its 2xx starts a new interval.
        let t1 = t0 + Duration::from_secs(901);
        t.refreshed(t1, 1800, Side::Us);
        assert_eq!(t.deadline(), Some(t1 + Duration::from_secs(900)));
    }

    #[test]
    fn the_other_side_expires_the_session_before_the_interval_ends() {
        let t0 = Instant::now();
        // Long interval: 32 s before the end.
        let mut t = SessionTimer::new(t0, 1800, Side::Peer);
        assert_eq!(t.deadline(), Some(t0 + Duration::from_secs(1768)));
        assert_eq!(t.poll(t0 + Duration::from_secs(1767)), None);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(1768)),
            Some(TimerAction::Expired)
        );
        // Short interval: a third before the end (90 s → 60 s).
        let t = SessionTimer::new(t0, 90, Side::Peer);
        assert_eq!(t.deadline(), Some(t0 + Duration::from_secs(60)));
        // 96 s: the third equals 32 s.
        let t = SessionTimer::new(t0, 96, Side::Peer);
        assert_eq!(t.deadline(), Some(t0 + Duration::from_secs(64)));
    }

    #[test]
    fn a_refresh_from_the_peer_postpones_expiry() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 120, Side::Peer);
        // The peer refreshes at half the interval, as RFC 4028 10 recommends.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(t.poll(t1), None);
        t.refreshed(t1, 120, Side::Peer);
        assert_eq!(t.poll(t0 + Duration::from_secs(100)), None);
        // 120 - min(32, 40) = 88 s after the refresh.
        assert_eq!(t.deadline(), Some(t1 + Duration::from_secs(88)));
        assert_eq!(
            t.poll(t1 + Duration::from_secs(88)),
            Some(TimerAction::Expired)
        );
    }

    #[test]
    fn a_declined_refresh_keeps_the_session_and_honours_a_larger_min_se() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 120, Side::Us);
        assert_eq!(
            t.poll(t0 + Duration::from_secs(60)),
            Some(TimerAction::Refresh)
        );
        let t1 = t0 + Duration::from_secs(61);
        t.refresh_declined(t1, Some(600));
        assert_eq!(t.interval(), Duration::from_secs(600));
        assert_eq!(t.deadline(), Some(t1 + Duration::from_secs(300)));
        t.refresh_declined(t1, None);
        assert_eq!(t.interval(), Duration::from_secs(600));
    }
}
