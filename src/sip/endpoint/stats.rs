//! What the endpoint has counted since it started, as plain numbers: requests
//! received, responses sent, malformed messages, admission refusals. The
//! endpoint only adds to them; whoever reads them (the metrics side) works
//! out what moved since it last looked. Every set is bounded.

use crate::sip::admission::Rejection;

/// Methods counted under their own name; any other method token is counted
/// as `other`, so that a scanner cannot grow the set.
pub const COUNTED_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// The name of the slot for every method not in `COUNTED_METHODS`, and for
/// status codes outside 100..=699.
pub const OTHER: &str = "other";

/// Status codes counted one by one: 100..=699.
const FIRST_CODE: u16 = 100;
const CODES: usize = 600;

/// The endpoint's counters, read with `SipEndpoint::stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    /// By `COUNTED_METHODS` index; the last slot is `other`.
    requests: [u64; COUNTED_METHODS.len() + 1],
    /// By `code - 100`.
    responses: [u64; CODES],
    responses_other: u64,
    malformed_answered: u64,
    malformed_dropped: u64,
    /// By position in `Rejection::ALL`.
    rejected: [u64; Rejection::ALL.len()],
    /// Every count made, of any kind.
    counted: u64,
}

impl Default for EndpointStats {
    fn default() -> EndpointStats {
        EndpointStats {
            requests: [0; COUNTED_METHODS.len() + 1],
            responses: [0; CODES],
            responses_other: 0,
            malformed_answered: 0,
            malformed_dropped: 0,
            rejected: [0; Rejection::ALL.len()],
            counted: 0,
        }
    }
}

impl EndpointStats {
    /// Counts one request received. Method names compare without regard to
    /// case; unknown ones count as `other`.
    pub fn count_request(&mut self, method: &str) {
        let slot = method_slot(method);
        self.bump(|s| &mut s.requests[slot]);
    }

    /// Counts one response sent (a retransmission is not another response).
    pub fn count_response(&mut self, code: u16) {
        match code_slot(code) {
            Some(slot) => self.bump(|s| &mut s.responses[slot]),
            None => self.bump(|s| &mut s.responses_other),
        }
    }

    /// Counts a message that could not be parsed: answered with an error
    /// status (`answered`), or dropped because no answer could be formed.
    pub fn count_malformed(&mut self, answered: bool) {
        if answered {
            self.bump(|s| &mut s.malformed_answered);
        } else {
            self.bump(|s| &mut s.malformed_dropped);
        }
    }

    /// Counts a request turned away by admission control.
    pub fn count_rejection(&mut self, reason: Rejection) {
        let slot = Rejection::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.bump(|s| &mut s.rejected[slot]);
    }

    fn bump(&mut self, slot: impl FnOnce(&mut EndpointStats) -> &mut u64) {
        let counter = slot(self);
        *counter = counter.saturating_add(1);
        self.counted = self.counted.wrapping_add(1);
    }

    /// How many counts were made, of every kind: two readings with the same
    /// number (of one endpoint) hold the same figures.
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// Requests received with this method (`other`, or any unknown method,
    /// reads the shared slot).
    pub fn requests_of(&self, method: &str) -> u64 {
        self.requests[method_slot(method)]
    }

    /// Requests received, by method name (`COUNTED_METHODS`, then `other`).
    pub fn requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTED_METHODS
            .iter()
            .copied()
            .chain([OTHER])
            .zip(self.requests.iter().copied())
    }

    /// Responses sent with this status code.
    pub fn responses_of(&self, code: u16) -> u64 {
        match code_slot(code) {
            Some(slot) => self.responses[slot],
            None => self.responses_other,
        }
    }

    /// Responses sent, by status code (100..=699, in order), then the
    /// codes outside that range as `None`.
    pub fn responses(&self) -> impl Iterator<Item = (Option<u16>, u64)> + '_ {
        (FIRST_CODE..)
            .map(Some)
            .zip(self.responses.iter().copied())
            .chain([(None, self.responses_other)])
    }

    /// Malformed messages answered with an error status.
    pub fn malformed_answered(&self) -> u64 {
        self.malformed_answered
    }

    /// Malformed messages dropped unanswered.
    pub fn malformed_dropped(&self) -> u64 {
        self.malformed_dropped
    }

    /// Requests turned away for this reason.
    pub fn rejected_of(&self, reason: Rejection) -> u64 {
        self.rejected()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n)
    }

    /// Requests turned away, by reason (in `Rejection::ALL` order).
    pub fn rejected(&self) -> impl Iterator<Item = (Rejection, u64)> + '_ {
        Rejection::ALL
            .into_iter()
            .zip(self.rejected.iter().copied())
    }
}

fn method_slot(method: &str) -> usize {
    COUNTED_METHODS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(method))
        .unwrap_or(COUNTED_METHODS.len())
}

fn code_slot(code: u16) -> Option<usize> {
    let slot = usize::from(code.checked_sub(FIRST_CODE)?);
    (slot < CODES).then_some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_bounded_slots() {
        let mut s = EndpointStats::default();
        s.count_request("INVITE");
        s.count_request("invite");
        s.count_request("FROBNICATE");
        s.count_request("");
        s.count_response(100);
        s.count_response(699);
        s.count_response(99);
        s.count_response(700);
        s.count_malformed(true);
        s.count_rejection(Rejection::Scanner);
        assert_eq!(s.requests_of("INVITE"), 2);
        assert_eq!(s.requests_of(OTHER), 2);
        assert_eq!(s.requests().count(), COUNTED_METHODS.len() + 1);
        assert_eq!((s.responses_of(100), s.responses_of(699)), (1, 1));
        assert_eq!(s.responses_of(0), 2, "outside 100..=699 shares a slot");
        assert_eq!(s.responses().last(), Some((None, 2)));
        assert_eq!(s.responses().nth(599), Some((Some(699), 1)));
        assert_eq!((s.malformed_answered(), s.malformed_dropped()), (1, 0));
        assert_eq!(s.rejected_of(Rejection::Scanner), 1);
        assert_eq!(s.rejected_of(Rejection::Untrusted), 0);
        assert_eq!(s.counted(), 10);
    }
}
