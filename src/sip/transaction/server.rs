//! Server transactions: RFC 3261 17.2.1 (INVITE, with RFC 6026 "Accepted")
//! and 17.2.2 (non-INVITE).

use super::{TimerOutcome, Timers};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    /// A 3xx-6xx was sent; waiting for the ACK (Timers G, H).
    Completed,
    /// ACK received; absorbing retransmitted ACKs (Timer I).
    Confirmed,
    /// A 2xx was sent; the core retransmits it until ACK (Timer L).
    Accepted,
    Terminated,
}

/// INVITE server transaction.
#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    timers: Timers,
    reliable: bool,
    last_response: Option<Vec<u8>>,
    last_code: u16,
    /// Timer G: next retransmit of the final response, and its interval.
    timer_g: Option<(Instant, Duration)>,
    /// Timer H (Completed), I (Confirmed) or L (Accepted): when the state ends.
    state_deadline: Option<Instant>,
}

impl InviteServer {
    pub fn new(timers: Timers, reliable: bool) -> InviteServer {
        InviteServer {
            state: InviteServerState::Proceeding,
            timers,
            reliable,
            last_response: None,
            last_code: 0,
            timer_g: None,
            state_deadline: None,
        }
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// Status of the last response handed to the transaction (0: none yet).
    pub fn last_code(&self) -> u16 {
        self.last_code
    }

    pub fn last_response(&self) -> Option<&[u8]> {
        self.last_response.as_deref()
    }

    /// Records a response the core sends. Returns false (and changes nothing)
    /// when the state does not allow it, e.g. a second final response.
    pub fn send_response(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> bool {
        match self.state {
            InviteServerState::Proceeding => {}
            // RFC 6026 7.1: 2xx retransmissions pass through in Accepted.
            InviteServerState::Accepted if (200..300).contains(&code) => {
                self.last_response = Some(bytes);
                return true;
            }
            _ => return false,
        }
        self.last_code = code;
        self.last_response = Some(bytes);
        match code {
            100..=199 => {}
            200..=299 => {
                self.state = InviteServerState::Accepted;
                self.state_deadline = Some(now + self.timers.timeout());
            }
            _ => {
                self.state = InviteServerState::Completed;
                if !self.reliable {
                    self.timer_g = Some((now + self.timers.t1, self.timers.t1));
                }
                self.state_deadline = Some(now + self.timers.timeout());
            }
        }
        true
    }

    /// A retransmitted INVITE arrived: what to send back, if anything. In
    /// Accepted the core owns the 2xx and decides itself.
    pub fn on_retransmit(&self) -> Option<&[u8]> {
        match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => {
                self.last_response.as_deref()
            }
            _ => None,
        }
    }

    /// An ACK matched this transaction. True when it was for our non-2xx final
    /// response (and so is absorbed here); false when the core should see it.
    pub fn on_ack(&mut self, now: Instant) -> bool {
        match self.state {
            InviteServerState::Completed => {
                self.timer_g = None;
                if self.reliable {
                    self.state = InviteServerState::Terminated;
                    self.state_deadline = None;
                } else {
                    self.state = InviteServerState::Confirmed;
                    self.state_deadline = Some(now + self.timers.t4);
                }
                true
            }
            InviteServerState::Confirmed => true,
            _ => false,
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.timer_g.map(|(at, _)| at), self.state_deadline) {
            (Some(g), Some(d)) => Some(g.min(d)),
            (g, d) => g.or(d),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> TimerOutcome {
        if let Some(deadline) = self.state_deadline.filter(|d| *d <= now) {
            let _ = deadline;
            let was = self.state;
            self.state = InviteServerState::Terminated;
            self.state_deadline = None;
            self.timer_g = None;
            // Timer H: the ACK for our error response never came.
            return if was == InviteServerState::Completed {
                TimerOutcome::TimedOut
            } else {
                TimerOutcome::Terminated
            };
        }
        if let Some((at, interval)) = self.timer_g {
            if at <= now && self.state == InviteServerState::Completed {
                let next = self.timers.backoff(interval);
                self.timer_g = Some((now + next, next));
                return TimerOutcome::Retransmit;
            }
        }
        TimerOutcome::Idle
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE server transaction.
#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    timers: Timers,
    reliable: bool,
    last_response: Option<Vec<u8>>,
    /// Timer J in Completed; before that a bound on how long the core may take.
    deadline: Instant,
}

impl NonInviteServer {
    pub fn new(now: Instant, timers: Timers, reliable: bool) -> NonInviteServer {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            timers,
            reliable,
            last_response: None,
            deadline: now + timers.timeout(),
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    pub fn send_response(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> bool {
        if !matches!(
            self.state,
            NonInviteServerState::Trying | NonInviteServerState::Proceeding
        ) {
            return false;
        }
        self.last_response = Some(bytes);
        if code < 200 {
            self.state = NonInviteServerState::Proceeding;
        } else if self.reliable {
            self.state = NonInviteServerState::Terminated;
        } else {
            self.state = NonInviteServerState::Completed;
            self.deadline = now + self.timers.timeout();
        }
        true
    }

    /// A retransmitted request: the last response to repeat (none in Trying).
    pub fn on_retransmit(&self) -> Option<&[u8]> {
        match self.state {
            NonInviteServerState::Proceeding | NonInviteServerState::Completed => {
                self.last_response.as_deref()
            }
            _ => None,
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        (!self.is_terminated()).then_some(self.deadline)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> TimerOutcome {
        if self.is_terminated() || self.deadline > now {
            return TimerOutcome::Idle;
        }
        let was = self.state;
        self.state = NonInviteServerState::Terminated;
        if was == NonInviteServerState::Completed {
            TimerOutcome::Terminated
        } else {
            TimerOutcome::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn invite_error_response_retransmits_with_timer_g_until_h() {
        let t0 = Instant::now();
        let timers = Timers::default();
        let mut tx = InviteServer::new(timers, false);
        assert!(tx.send_response(t0, 100, b"100".to_vec()));
        assert_eq!(tx.on_retransmit(), Some(&b"100"[..]));
        assert!(tx.send_response(t0, 486, b"486".to_vec()));
        assert_eq!(tx.state(), InviteServerState::Completed);
        assert!(!tx.send_response(t0, 200, b"200".to_vec()));
        let mut fired = Vec::new();
        while let Some(at) = tx.next_timeout() {
            match tx.handle_timeout(at) {
                TimerOutcome::Retransmit => fired.push(at - t0),
                TimerOutcome::TimedOut => {
                    fired.push(at - t0);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let expect: Vec<Duration> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000,
        ]
        .iter()
        .map(|m| ms(*m))
        .collect();
        assert_eq!(fired, expect);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_ack_confirms_then_timer_i() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(Timers::default(), false);
        tx.send_response(t0, 487, b"487".to_vec());
        assert!(tx.on_ack(t0 + ms(100)));
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        assert!(tx.on_ack(t0 + ms(200)), "retransmitted ACK absorbed");
        assert_eq!(tx.on_retransmit(), None);
        assert_eq!(tx.next_timeout(), Some(t0 + ms(5100)));
        assert_eq!(tx.handle_timeout(t0 + ms(5000)), TimerOutcome::Idle);
        assert_eq!(tx.handle_timeout(t0 + ms(5100)), TimerOutcome::Terminated);
    }

    #[test]
    fn invite_reliable_has_no_timer_g_and_no_timer_i() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(Timers::default(), true);
        tx.send_response(t0, 480, b"480".to_vec());
        assert_eq!(tx.next_timeout(), Some(t0 + ms(32000)));
        assert!(tx.on_ack(t0));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_2xx_goes_to_accepted_with_timer_l() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(Timers::default(), false);
        tx.send_response(t0, 200, b"200".to_vec());
        assert_eq!(tx.state(), InviteServerState::Accepted);
        assert_eq!(tx.on_retransmit(), None, "the core owns 2xx retransmission");
        assert!(!tx.on_ack(t0), "ACK for 2xx goes to the core");
        assert!(tx.send_response(t0 + ms(500), 200, b"200".to_vec()));
        assert_eq!(tx.next_timeout(), Some(t0 + ms(32000)));
        assert_eq!(tx.handle_timeout(t0 + ms(32000)), TimerOutcome::Terminated);
    }

    #[test]
    fn non_invite_completed_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::new(t0, Timers::default(), false);
        assert_eq!(tx.on_retransmit(), None, "Trying absorbs retransmissions");
        tx.send_response(t0 + ms(10), 200, b"200".to_vec());
        assert_eq!(tx.state(), NonInviteServerState::Completed);
        assert_eq!(tx.on_retransmit(), Some(&b"200"[..]));
        assert!(!tx.send_response(t0, 500, b"500".to_vec()));
        assert_eq!(tx.next_timeout(), Some(t0 + ms(32010)));
        assert_eq!(tx.handle_timeout(t0 + ms(32010)), TimerOutcome::Terminated);
    }

    #[test]
    fn non_invite_proceeding_and_reliable() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::new(t0, Timers::default(), true);
        tx.send_response(t0, 100, b"100".to_vec());
        assert_eq!(tx.state(), NonInviteServerState::Proceeding);
        assert_eq!(tx.on_retransmit(), Some(&b"100"[..]));
        tx.send_response(t0, 200, b"200".to_vec());
        assert!(tx.is_terminated(), "Timer J is zero on reliable transports");
        // A core that never answers is bounded too.
        let mut idle = NonInviteServer::new(t0, Timers::default(), false);
        assert_eq!(idle.handle_timeout(t0 + ms(32000)), TimerOutcome::TimedOut);
    }
}
