//! Client transactions: RFC 3261 17.1.2 (non-INVITE: Timers E, F, K) and
//! 17.1.1 (INVITE: Timers A, B, D, with RFC 6026 "Accepted" and Timer M).

use super::{TimerOutcome, Timers};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What a received response means to the owner of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// 1xx: pass on, nothing to do.
    Provisional,
    /// The first final response.
    Final(u16),
    /// A retransmitted final response: ignore.
    Absorbed,
}

/// Non-INVITE client transaction (e.g. our BYE).
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteState,
    timers: Timers,
    reliable: bool,
    request: Vec<u8>,
    /// Timer E: next retransmit and its interval (unreliable only).
    timer_e: Option<(Instant, Duration)>,
    /// Timer F while waiting, Timer K once completed.
    deadline: Instant,
}

impl NonInviteClient {
    /// Starts the transaction; the caller sends `request` right away.
    pub fn new(now: Instant, timers: Timers, reliable: bool, request: Vec<u8>) -> NonInviteClient {
        NonInviteClient {
            state: NonInviteState::Trying,
            timers,
            reliable,
            request,
            timer_e: (!reliable).then(|| (now + timers.t1, timers.t1)),
            deadline: now + timers.timeout(),
        }
    }

    pub fn request(&self) -> &[u8] {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteState::Terminated
    }

    pub fn on_response(&mut self, now: Instant, code: u16) -> ClientEvent {
        match self.state {
            NonInviteState::Trying | NonInviteState::Proceeding if code < 200 => {
                self.state = NonInviteState::Proceeding;
                ClientEvent::Provisional
            }
            NonInviteState::Trying | NonInviteState::Proceeding => {
                self.timer_e = None;
                if self.reliable {
                    self.state = NonInviteState::Terminated;
                } else {
                    self.state = NonInviteState::Completed;
                    self.deadline = now + self.timers.t4;
                }
                ClientEvent::Final(code)
            }
            _ => ClientEvent::Absorbed,
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        if self.is_terminated() {
            return None;
        }
        Some(match self.timer_e {
            Some((e, _)) => e.min(self.deadline),
            None => self.deadline,
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) -> TimerOutcome {
        if self.is_terminated() {
            return TimerOutcome::Idle;
        }
        if self.deadline <= now {
            let was = self.state;
            self.state = NonInviteState::Terminated;
            self.timer_e = None;
            // Timer F: no final response ever came.
            return if was == NonInviteState::Completed {
                TimerOutcome::Terminated
            } else {
                TimerOutcome::TimedOut
            };
        }
        match self.timer_e {
            Some((at, interval)) if at <= now => {
                let next = if self.state == NonInviteState::Proceeding {
                    self.timers.t2
                } else {
                    self.timers.backoff(interval)
                };
                self.timer_e = Some((now + next, next));
                TimerOutcome::Retransmit
            }
            _ => TimerOutcome::Idle,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// What a response to our INVITE means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientEvent {
    Provisional(u16),
    /// A 2xx (first or retransmitted): the core ACKs it end to end.
    Success(u16),
    /// First 3xx-6xx: report it; build the ACK and give it to `set_ack`.
    Failure(u16),
    /// Retransmitted 3xx-6xx: send `ack()` again.
    ResendAck,
    Absorbed,
}

/// INVITE client transaction (for calls we place).
#[derive(Debug)]
pub struct InviteClient {
    state: InviteState,
    timers: Timers,
    reliable: bool,
    request: Vec<u8>,
    ack: Option<Vec<u8>>,
    /// Timer A: next retransmit and its interval (unreliable only).
    timer_a: Option<(Instant, Duration)>,
    /// Timer B (Calling), D (Completed) or M (Accepted).
    deadline: Option<Instant>,
}

impl InviteClient {
    pub fn new(now: Instant, timers: Timers, reliable: bool, request: Vec<u8>) -> InviteClient {
        InviteClient {
            state: InviteState::Calling,
            timers,
            reliable,
            request,
            ack: None,
            timer_a: (!reliable).then(|| (now + timers.t1, timers.t1)),
            deadline: Some(now + timers.timeout()),
        }
    }

    pub fn request(&self) -> &[u8] {
        &self.request
    }

    pub fn ack(&self) -> Option<&[u8]> {
        self.ack.as_deref()
    }

    /// Stores the ACK built for a non-2xx final response (sent by the caller).
    pub fn set_ack(&mut self, ack: Vec<u8>) {
        self.ack = Some(ack);
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }

    pub fn on_response(&mut self, now: Instant, code: u16) -> InviteClientEvent {
        match (self.state, code) {
            (InviteState::Calling | InviteState::Proceeding, 100..=199) => {
                self.state = InviteState::Proceeding;
                self.timer_a = None;
                // Timer B only guards the wait for any response.
                self.deadline = None;
                InviteClientEvent::Provisional(code)
            }
            (InviteState::Calling | InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted;
                self.timer_a = None;
                self.deadline = Some(now + self.timers.timeout());
                InviteClientEvent::Success(code)
            }
            (InviteState::Accepted, 200..=299) => InviteClientEvent::Success(code),
            (InviteState::Calling | InviteState::Proceeding, _) => {
                self.timer_a = None;
                if self.reliable {
                    self.state = InviteState::Terminated;
                    self.deadline = None;
                } else {
                    self.state = InviteState::Completed;
                    self.deadline = Some(now + self.timers.d);
                }
                InviteClientEvent::Failure(code)
            }
            (InviteState::Completed, 300..=699) => InviteClientEvent::ResendAck,
            _ => InviteClientEvent::Absorbed,
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.timer_a.map(|(a, _)| a), self.deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> TimerOutcome {
        if let Some(deadline) = self.deadline.filter(|d| *d <= now) {
            let _ = deadline;
            let was = self.state;
            self.state = InviteState::Terminated;
            self.deadline = None;
            self.timer_a = None;
            // Timer B: nothing at all came back.
            return if was == InviteState::Calling {
                TimerOutcome::TimedOut
            } else {
                TimerOutcome::Terminated
            };
        }
        match self.timer_a {
            Some((at, interval)) if at <= now && self.state == InviteState::Calling => {
                // Timer A doubles without the T2 cap (RFC 3261 17.1.1.2).
                let next = interval.saturating_mul(2);
                self.timer_a = Some((now + next, next));
                TimerOutcome::Retransmit
            }
            _ => TimerOutcome::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs timers until the transaction ends; returns (retransmit times, end, outcome).
    fn drain(
        t0: Instant,
        mut next: impl FnMut() -> Option<Instant>,
        mut fire: impl FnMut(Instant) -> TimerOutcome,
    ) -> (Vec<u64>, u64, TimerOutcome) {
        let mut retransmits = Vec::new();
        while let Some(at) = next() {
            let since = (at - t0).as_millis() as u64;
            match fire(at) {
                TimerOutcome::Retransmit => retransmits.push(since),
                TimerOutcome::Idle => {}
                end => return (retransmits, since, end),
            }
        }
        panic!("transaction never ended")
    }

    #[test]
    fn non_invite_timer_e_backs_off_to_t2_then_f() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, Timers::default(), false, b"BYE".to_vec());
        let tx = std::cell::RefCell::new(&mut tx);
        let (re, end, outcome) = drain(
            t0,
            || tx.borrow().next_timeout(),
            |at| tx.borrow_mut().handle_timeout(at),
        );
        assert_eq!(
            re,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!((end, outcome), (32000, TimerOutcome::TimedOut));
    }

    #[test]
    fn non_invite_proceeding_uses_t2_and_final_starts_k() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, Timers::default(), false, b"BYE".to_vec());
        assert_eq!(tx.handle_timeout(t0 + ms(500)), TimerOutcome::Retransmit);
        assert_eq!(tx.on_response(t0 + ms(600), 100), ClientEvent::Provisional);
        assert_eq!(tx.next_timeout(), Some(t0 + ms(1500)));
        assert_eq!(tx.handle_timeout(t0 + ms(1500)), TimerOutcome::Retransmit);
        assert_eq!(tx.next_timeout(), Some(t0 + ms(5500)), "T2 in Proceeding");
        assert_eq!(tx.on_response(t0 + ms(2000), 200), ClientEvent::Final(200));
        assert_eq!(tx.on_response(t0 + ms(2100), 200), ClientEvent::Absorbed);
        assert_eq!(tx.next_timeout(), Some(t0 + ms(7000)), "Timer K = T4");
        assert_eq!(tx.handle_timeout(t0 + ms(7000)), TimerOutcome::Terminated);
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_reliable_has_no_e_and_no_k() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, Timers::default(), true, b"BYE".to_vec());
        assert_eq!(tx.next_timeout(), Some(t0 + ms(32000)));
        assert_eq!(tx.on_response(t0, 481), ClientEvent::Final(481));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_timer_a_doubles_until_b() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, Timers::default(), false, b"INVITE".to_vec());
        let tx = std::cell::RefCell::new(&mut tx);
        let (re, end, outcome) = drain(
            t0,
            || tx.borrow().next_timeout(),
            |at| tx.borrow_mut().handle_timeout(at),
        );
        assert_eq!(re, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!((end, outcome), (32000, TimerOutcome::TimedOut));
    }

    #[test]
    fn invite_failure_acks_and_waits_timer_d() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, Timers::default(), false, b"INVITE".to_vec());
        assert_eq!(tx.on_response(t0, 180), InviteClientEvent::Provisional(180));
        assert_eq!(
            tx.next_timeout(),
            None,
            "no Timer A or B once a response came"
        );
        assert_eq!(
            tx.on_response(t0 + ms(10), 486),
            InviteClientEvent::Failure(486)
        );
        tx.set_ack(b"ACK".to_vec());
        assert_eq!(
            tx.on_response(t0 + ms(20), 486),
            InviteClientEvent::ResendAck
        );
        assert_eq!(tx.ack(), Some(&b"ACK"[..]));
        assert_eq!(tx.next_timeout(), Some(t0 + ms(32010)));
        assert_eq!(tx.handle_timeout(t0 + ms(32010)), TimerOutcome::Terminated);
    }

    #[test]
    fn invite_success_accepted_until_timer_m() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, Timers::default(), false, b"INVITE".to_vec());
        assert_eq!(tx.on_response(t0, 200), InviteClientEvent::Success(200));
        assert_eq!(
            tx.on_response(t0 + ms(500), 200),
            InviteClientEvent::Success(200)
        );
        assert_eq!(tx.handle_timeout(t0 + ms(31000)), TimerOutcome::Idle);
        assert_eq!(tx.handle_timeout(t0 + ms(32000)), TimerOutcome::Terminated);
        let mut reliable = InviteClient::new(t0, Timers::default(), true, b"INVITE".to_vec());
        assert_eq!(reliable.next_timeout(), Some(t0 + ms(32000)));
        assert_eq!(
            reliable.on_response(t0, 503),
            InviteClientEvent::Failure(503)
        );
        assert!(
            reliable.is_terminated(),
            "Timer D is zero on reliable transports"
        );
    }
}
