//! Callbacks that keep the caller's place.
//!
//! A waiting caller hears the queue step's offer ("press 1 to be called
//! back; you keep your place") and presses its key: their entry is held
//! (offered to nobody) while the flow confirms the number, and the flow's
//! `callback` step books it. The entry then stays in the queue, silent, with
//! the time the caller first joined. When it reaches the front and an agent
//! is free, the agent's phone rings as for any caller; once the agent
//! answers they hear a short whisper (the caller's language and wait) while
//! we dial the caller through a trunk, greet them ("the hotline calling you
//! back") and bridge the two. An attempt that is not answered puts the entry
//! back in its place, held until the retry time; after the last attempt, or
//! past its deadline, the callback fails. Outside its window (a schedule)
//! it is held, so that a line that is not 24/7 makes no 3 am calls.
//!
//! Every change is written as a [`CallbackRecord`] (journal first, then the
//! database), and a restarted service puts every pending callback back in
//! its place.

use super::queueing::agent_media_key;
use super::transfer::{trunk_media_key, TrunkPurpose};
use super::{CallManager, FlowBundle, MediaControl, Observation, Output, Stage};
use crate::acd::{
    CallbackPlace, JoinOptions, JoinRequest, LeaveOutcome, NoAgentsPolicy, PlaceHeld, QueueExit,
    QueueService,
};
use crate::cdr::{callback_state as state, queue_event as qe, CallbackRecord};
use crate::flow::{CallbackRequest, FlowEvent};
use crate::ids::{AgentId, CallId};
use crate::language::Language;
use crate::media::Codec;
use crate::sip::LegKey;
use crate::time::Now;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Callbacks put back after a restart are queue callers of their own: this
/// bit keeps their ids apart from the SIP endpoint's call ids (the agent and
/// trunk leg bits are above it).
const RESTORED_BIT: u64 = 1 << 61;

/// Play ids of the greeting said to a caller we call back, and of the
/// agent's whisper; apart from the flows' and the announcements'.
const GREETING_PLAY_ID: u64 = 1 << 60;
const WHISPER_PLAY_ID: u64 = (1 << 60) + 1;

/// Most callbacks kept at once (pending and in progress); more are refused
/// (the caller stays on the line in their place).
pub const MAX_CALLBACKS: usize = 10_000;

/// The `event` label of `hotline_callbacks_total`.
pub mod callback_event {
    pub const REQUESTED: &str = "requested";
    pub const ATTEMPTED: &str = "attempted";
    pub const CONNECTED: &str = "connected";
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 4] = [REQUESTED, ATTEMPTED, CONNECTED, FAILED];
}

/// A callback as the API shows it (`GET /api/callbacks`): no caller
/// number, which stays in the records for those allowed to read them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallbackSummary {
    pub id: u64,
    pub queue: String,
    pub language: Language,
    /// `pending` (waiting for an adviser or its retry time), `calling` (an
    /// adviser answered; the caller is being called) or `connected`.
    pub state: &'static str,
    /// Seconds since the caller first joined the queue.
    pub waited_seconds: f64,
    pub attempts_made: u32,
    pub attempts: u32,
    /// Unix seconds before which no new attempt is made, after one failed.
    pub retry_at: Option<f64>,
    /// Held because its window (`window`, a schedule) is closed.
    pub outside_window: bool,
    pub window: Option<String>,
    pub agent: Option<String>,
}

/// A booked callback, as the call layer drives it.
pub(super) struct Callback {
    pub record: CallbackRecord,
    pub language: Language,
    pub joined_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub retry_after: Duration,
    /// The flows it was booked with: prompts, and the window's schedule.
    pub bundle: Arc<FlowBundle>,
    /// The agent leg ringing or answered for the attempt in progress.
    pub agent_leg: Option<LegKey>,
    pub agent: Option<AgentId>,
    /// The call to the caller, for the attempt in progress.
    pub trunk_leg: Option<LegKey>,
    /// Caller and agent are talking.
    pub connected: bool,
    /// The queue's exit for the attempt in progress (the agent answered),
    /// counted once the caller answers too.
    pub exit: Option<QueueExit>,
    /// Held because its window is closed.
    pub outside_window: bool,
    /// Held until this time after an attempt that did not connect.
    pub retry_at: Option<DateTime<Utc>>,
}

impl Callback {
    /// A callback as its record stands, waiting (no attempt in progress).
    fn new(record: CallbackRecord, language: Language, bundle: Arc<FlowBundle>) -> Callback {
        Callback {
            language,
            joined_at: from_ms(record.joined_ms),
            deadline: from_ms(record.deadline_ms),
            retry_after: Duration::from_secs(record.retry_after_s),
            bundle,
            agent_leg: None,
            agent: None,
            trunk_leg: None,
            connected: false,
            exit: None,
            outside_window: false,
            retry_at: None,
            record,
        }
    }

    fn window_open(&self, at: DateTime<Utc>) -> bool {
        match &self.record.window {
            None => true,
            Some(name) => match self.bundle.flows.schedules.get(name) {
                Some(s) => s.is_open(at),
                None => name == crate::flow::schedule::ALWAYS,
            },
        }
    }

    /// Its entry in the queue as it stands now: held while its window is
    /// closed or until its retry time. Notes whether the window is closed.
    fn place(&mut self, now: Now) -> CallbackPlace {
        self.outside_window = !self.window_open(now.wall);
        let held = if self.outside_window {
            PlaceHeld::UntilReleased
        } else {
            match self.retry_at {
                Some(t) if t > now.wall => PlaceHeld::Until(t),
                _ => PlaceHeld::No,
            }
        };
        CallbackPlace {
            until: self.deadline,
            held,
            ticket: self.record.ticket(),
        }
    }

    /// Writes the record's next version.
    fn touch(&mut self, now: Now) -> CallbackRecord {
        self.record.version += 1;
        self.record.updated_ms = now.wall_ms();
        self.record.clone()
    }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// Whether callbacks can be offered at all: the queue engine holds
    /// places, and a trunk could call the caller back.
    pub(super) fn callbacks_possible(&self, number: &str) -> bool {
        self.queue.holds_places() && self.trunks.allows(number).is_ok()
    }

    /// The caller pressed the callback key: their place is held, offered to
    /// nobody, while the flow confirms the number.
    pub(super) fn hold_place(&mut self, now: Now, key: CallId) {
        let caller = self.caller_id(key);
        let held = self.queue.hold(now, &caller, None);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if !held {
            tracing::warn!(
                call = key.0,
                "callback asked for, but the caller holds no place"
            );
            return;
        }
        call.holding = true;
        self.media.stop_music(key);
        self.media.stop(key);
        self.set_stage(key, Stage::Ivr);
        tracing::info!(
            call = key.0,
            "callback asked for: place held while the number is confirmed"
        );
    }

    /// A held caller's flow queues again ("keep waiting"): their place comes
    /// back into routing as it was. Whether the caller held a place.
    pub(super) fn resume_held_place(&mut self, now: Now, key: CallId) -> bool {
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        if !call.holding {
            return false;
        }
        call.holding = false;
        let music = call.bundle.prompts.hold_music();
        let caller = self.caller_id(key);
        if !self.queue.hold(now, &caller, Some(now.wall)) {
            // Taken out meanwhile (its max wait): the flow goes on.
            self.flow_event(now, key, FlowEvent::QueueTimeout);
            return true;
        }
        self.media.play_music(key, music);
        self.set_stage(key, Stage::Queue);
        tracing::info!(call = key.0, "back in the queue in the place held");
        true
    }

    /// The flow's `callback` step: books the callback for the held place, or
    /// says why not (the flow's `on_invalid`).
    pub(super) fn book_callback(&mut self, now: Now, key: CallId, request: CallbackRequest) {
        match self.try_book(now, key, &request) {
            Ok(()) => self.flow_event(now, key, FlowEvent::CallbackBooked),
            Err(why) => {
                tracing::info!(call = key.0, why, "callback not booked");
                self.flow_event(now, key, FlowEvent::CallbackRefused);
            }
        }
    }

    fn try_book(
        &mut self,
        now: Now,
        key: CallId,
        request: &CallbackRequest,
    ) -> Result<(), &'static str> {
        let caller = self.caller_id(key);
        let id = self.next_callback_id(now);
        let call = self.calls.get(&key).ok_or("no call")?;
        let queued = call.queued.as_ref().filter(|_| call.holding);
        let queued = queued.ok_or("the caller holds no place in a queue")?;
        if !self.queue.is_queued(&caller) {
            return Err("the caller's place is gone");
        }
        if self.callbacks.len() >= MAX_CALLBACKS {
            return Err("too many callbacks pending");
        }
        let number = request.number.clone().ok_or("no number")?;
        if let Err(refusal) = self.trunks.allows(&number) {
            self.observe(Observation::TrunkRefused {
                reason: refusal.label(),
            });
            return Err("no trunk may dial the number");
        }
        let joined_at = now.wall_at(queued.joined_at);
        let max_wait = chrono::Duration::from_std(request.max_wait).unwrap_or_default();
        let deadline = joined_at + max_wait;
        if deadline <= now.wall {
            return Err("the callback's longest wait has passed already");
        }
        let (queue, language) = (queued.queue.clone(), queued.language);
        let bundle = Arc::clone(&call.bundle);
        let record = CallbackRecord {
            id,
            call_record: super::record_id(call, key),
            number: number.clone(),
            typed: request.typed,
            dialled: call.info.dialled.clone(),
            queue: queue.clone(),
            language: language.code().to_string(),
            joined_ms: joined_at.timestamp_millis(),
            requested_ms: now.wall_ms(),
            deadline_ms: deadline.timestamp_millis(),
            attempts_made: 0,
            attempts: request.attempts,
            retry_after_s: request.retry_after.as_secs(),
            window: request.window.clone(),
            state: state::PENDING.to_string(),
            last_code: None,
            agent: None,
            updated_ms: now.wall_ms(),
            version: 1,
        };
        let mut callback = Callback::new(record, language, bundle);
        if !self
            .queue
            .keep_for_callback(now, &caller, callback.place(now))
        {
            return Err("the queue cannot keep the place");
        }
        self.outputs
            .push_back(Output::Callback(callback.record.clone()));
        if let Some(call) = self.calls.get_mut(&key) {
            call.holding = false;
            call.callback_booked = true;
            call.queued = None;
        }
        let mut e = self.queue_event(now, key, qe::CALLBACK_REQUESTED, &queue, language);
        e.wait_ms = Some(now.wall_ms() - callback.record.joined_ms);
        e.reason = Some(if request.typed { "typed" } else { "caller_id" }.to_string());
        self.log_queue(e);
        self.observe(Observation::Callback {
            event: callback_event::REQUESTED,
            language,
            waited: None,
        });
        tracing::info!(call = key.0, callback = callback.record.id, queue = %queue,
            language = language.code(), typed = request.typed,
            outside_window = callback.outside_window, "callback booked");
        self.callbacks.insert(key, callback);
        self.gauges_changed = true;
        Ok(())
    }

    /// Unique across restarts: the wall clock in ms and a counter.
    fn next_callback_id(&mut self, now: Now) -> u64 {
        self.callback_seq = self.callback_seq.wrapping_add(1);
        let ms = u64::try_from(now.wall_ms()).unwrap_or(0) & ((1 << 44) - 1);
        (ms << 12) | (self.callback_seq & 0xfff)
    }

    /// Puts back the callbacks a restarted service found pending: each
    /// joins its queue again with the time its caller first joined.
    pub fn restore_callbacks(&mut self, now: Now, records: Vec<CallbackRecord>) {
        if !self.queue.holds_places() {
            tracing::warn!(
                count = records.len(),
                "callbacks pending, but this queue engine keeps no places for callbacks: not called back"
            );
            return;
        }
        for record in records.into_iter().take(MAX_CALLBACKS) {
            self.put_back(
                now,
                record,
                "callback put back in its place after a restart",
            );
        }
        self.drain_queue(now);
    }

    /// A callback booked on a node that was lost is ours now: stored here
    /// and put back in its original place.
    pub(super) fn adopt_callback(&mut self, now: Now, ticket: &str) {
        let record = match CallbackRecord::from_ticket(ticket) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(error = %e, "callback of a lost node unreadable: not called back");
                return;
            }
        };
        if self.callbacks.len() >= MAX_CALLBACKS {
            tracing::error!(
                callback = record.id,
                "too many callbacks: one of a lost node is not called back"
            );
            return;
        }
        self.outputs.push_back(Output::Callback(record.clone()));
        self.put_back(now, record, "callback of a lost node adopted in its place");
    }

    /// Takes a stored callback back into its queue, under a call id of its
    /// own (the same one for the same callback: never twice).
    fn put_back(&mut self, now: Now, record: CallbackRecord, why: &str) {
        let Ok(language) = record.language.parse::<Language>() else {
            return;
        };
        let key = CallId(RESTORED_BIT | (record.id & (RESTORED_BIT - 1)));
        if self.callbacks.contains_key(&key) {
            return;
        }
        let callback = Callback::new(record, language, Arc::clone(&self.bundle));
        tracing::info!(callback = callback.record.id, queue = %callback.record.queue,
            language = language.code(), "{why}");
        self.callbacks.insert(key, callback);
        self.gauges_changed = true;
        self.rejoin(now, key);
    }

    /// Asks the queue to take the callback back in its original place,
    /// silent and held as it should be from the start.
    fn rejoin(&mut self, now: Now, key: CallId) {
        let caller = self.caller_id(key);
        let Some(cb) = self.callbacks.get_mut(&key) else {
            return;
        };
        if cb.deadline <= now.wall {
            self.callback_over(now, key, state::EXPIRED, "deadline passed");
            return;
        }
        let max_wait = (cb.deadline - cb.joined_at).to_std().unwrap_or_default();
        let request = JoinRequest {
            caller,
            queue: cb.record.queue.clone(),
            language: cb.language,
            options: JoinOptions {
                max_wait: Some(max_wait),
                no_agents: Some(NoAgentsPolicy::Wait),
                ..JoinOptions::default()
            },
            joined_at: cb.joined_at,
            number: cb.record.number.clone(),
            callback: Some(cb.place(now)),
        };
        self.queue.join(now, request);
    }

    /// Every housekeeping round: callbacks whose window opened or closed
    /// are released or held.
    pub(super) fn callback_windows(&mut self, now: Now) {
        let mut changes = Vec::new();
        for (key, cb) in &mut self.callbacks {
            if cb.agent_leg.is_some() || cb.trunk_leg.is_some() {
                continue;
            }
            let closed = !cb.window_open(now.wall);
            if closed != cb.outside_window {
                cb.outside_window = closed;
                let until = (!closed).then(|| cb.retry_at.unwrap_or(now.wall).max(now.wall));
                changes.push((*key, until, closed));
            }
        }
        for (key, until, closed) in changes {
            tracing::info!(
                call = key.0,
                window_open = !closed,
                "callback window changed"
            );
            let caller = self.caller_id(key);
            self.queue.hold(now, &caller, until);
        }
    }

    /// What an agent's phone shows for a callback: the number we will call,
    /// and whether it is one (`None`: not a callback).
    pub(super) fn callback_offer_details(&self, key: CallId) -> Option<(Codec, String)> {
        let cb = self.callbacks.get(&key)?;
        Some((Codec::Pcmu, cb.record.number.clone()))
    }

    pub(super) fn is_callback(&self, key: CallId) -> bool {
        self.callbacks.contains_key(&key)
    }

    /// The call record a callback was booked in (queue log rows name it).
    pub(super) fn callback_record_id(&self, key: CallId) -> Option<String> {
        self.callbacks
            .get(&key)
            .map(|cb| cb.record.call_record.clone())
    }

    /// The queue step's callback offer is due: said over the hold music,
    /// when the caller's wait is long enough; its key then books.
    pub(super) fn offer_callback(&mut self, now: Now, key: CallId) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let Some(offer) = call.flow.callback_offer().cloned() else {
            return;
        };
        let Some(q) = call.queued.as_ref().filter(|_| !call.holding) else {
            return;
        };
        // An unknown estimate (nobody serving) is as long as any.
        let long_enough = match (offer.estimated_wait, q.last_estimate) {
            (Some(threshold), Some(estimate)) => estimate >= threshold,
            _ => true,
        };
        if !long_enough {
            return;
        }
        tracing::info!(call = key.0, "callback offered");
        self.play_announcement(key, &[offer.prompt.as_str()]);
        if let Some(call) = self.calls.get_mut(&key) {
            call.flow
                .handle_event(now.mono, FlowEvent::CallbackOffered, &self.env);
        }
    }

    /// A callback could not take its place again (the queue is gone or
    /// full): given up.
    pub(super) fn callback_not_rejoined(&mut self, now: Now, key: CallId, why: &str) {
        tracing::info!(call = key.0, why, "callback could not rejoin its queue");
        self.callback_over(now, key, state::FAILED, why);
    }

    /// The agent hung up: after talking, the call is over; before the
    /// caller answered, the attempt is abandoned and the callback goes back
    /// to its place.
    pub(super) fn callback_agent_hung_up(&mut self, now: Now, key: CallId) {
        let connected = self.callbacks.get(&key).is_some_and(|cb| cb.connected);
        if connected {
            self.callback_call_ended(now, key);
        } else {
            self.callback_attempt_failed(now, key, 487);
        }
    }

    /// The agent answered a callback (the queue's verdict accepted it): they
    /// hear the whisper while we call the caller.
    pub(super) fn callback_agent_answered(&mut self, now: Now, key: CallId, agent: AgentId) {
        let Some(cb) = self.callbacks.get_mut(&key) else {
            return;
        };
        cb.agent = Some(agent.clone());
        cb.record.attempts_made += 1;
        let language = cb.language;
        let waited = now.since_wall(cb.joined_at);
        let number = cb.record.number.clone();
        let dialled = cb.record.dialled.clone();
        let bundle = Arc::clone(&cb.bundle);
        let attempt = cb.record.attempts_made;
        let record = cb.touch(now);
        self.outputs.push_back(Output::Callback(record));
        // "Callback in Polish; the caller has waited about 12 minutes."
        let minutes = waited.as_secs().div_ceil(60).max(1);
        let catalogue = &bundle.flows.catalogue;
        let mut ids = vec!["callback_whisper".to_string()];
        if let Some(m) = (minutes..=60).find(|m| {
            catalogue
                .text(&format!("wait_minutes.{m}"), language)
                .is_some()
        }) {
            ids.push(format!("wait_minutes.{m}"));
        }
        let clips: Vec<_> = ids
            .iter()
            .filter_map(|id| bundle.prompts.clip(id, language))
            .collect();
        if !clips.is_empty() {
            self.media
                .play(agent_media_key(key), WHISPER_PLAY_ID, clips);
        }
        self.observe(Observation::Callback {
            event: callback_event::ATTEMPTED,
            language,
            waited: None,
        });
        tracing::info!(call = key.0, agent = %agent.as_str(), attempt, number = %number,
            "callback: agent answered, calling the caller");
        let route = match self.trunks.route(&number, None, &dialled) {
            Ok(route) => route,
            Err(refusal) => {
                self.observe(Observation::TrunkRefused {
                    reason: refusal.label(),
                });
                self.callback_attempt_failed(now, key, 503);
                return;
            }
        };
        match self.dial_out(now, key, route, number, Codec::Pcmu, TrunkPurpose::Callback) {
            Some(leg) => {
                if let Some(cb) = self.callbacks.get_mut(&key) {
                    cb.trunk_leg = Some(leg);
                }
            }
            None => self.callback_attempt_failed(now, key, 503),
        }
    }

    /// The caller answered our call: the greeting, then the bridge.
    pub(super) fn callback_caller_answered(&mut self, now: Now, key: CallId) {
        let Some(cb) = self.callbacks.get(&key) else {
            return;
        };
        let clip = cb.bundle.prompts.clip("callback_greeting", cb.language);
        tracing::info!(call = key.0, "callback: the caller answered");
        match clip {
            Some(clip) => self
                .media
                .play(trunk_media_key(key), GREETING_PLAY_ID, vec![clip]),
            None => self.callback_connect(now, key),
        }
    }

    /// A prompt ended on a leg of a callback: after the greeting, caller and
    /// agent are bridged. Whether `media_key` is one of a callback's legs.
    pub(super) fn callback_playback_finished(
        &mut self,
        now: Now,
        media_key: CallId,
        play_id: u64,
    ) -> bool {
        if play_id == WHISPER_PLAY_ID {
            return true;
        }
        if play_id != GREETING_PLAY_ID {
            return false;
        }
        let key = super::transfer::call_of_trunk_media(media_key);
        if self
            .callbacks
            .get(&key)
            .is_some_and(|cb| cb.trunk_leg.is_some() && !cb.connected)
        {
            self.callback_connect(now, key);
        }
        true
    }

    fn callback_connect(&mut self, now: Now, key: CallId) {
        let Some(cb) = self.callbacks.get_mut(&key) else {
            return;
        };
        cb.connected = true;
        let language = cb.language;
        let waited = now.since_wall(cb.joined_at);
        cb.record.state = state::CONNECTED.to_string();
        cb.record.agent = cb.agent.as_ref().map(|a| a.as_str().to_string());
        let queue = cb.record.queue.clone();
        let agent = cb.agent.clone();
        let exit = cb.exit.take();
        let record = cb.touch(now);
        self.outputs.push_back(Output::Callback(record));
        self.media.stop(agent_media_key(key));
        self.media
            .bridge(agent_media_key(key), trunk_media_key(key));
        if let Some(exit) = exit {
            // Counted as answered now, with the whole wait.
            let exit = QueueExit { waited, ..exit };
            self.record_left(now, key, &exit);
        }
        let mut e = self.queue_event(now, key, qe::CALLBACK_CONNECTED, &queue, language);
        e.agent = agent.map(|a| a.as_str().to_string());
        e.wait_ms = Some(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX));
        self.log_queue(e);
        self.observe(Observation::Callback {
            event: callback_event::CONNECTED,
            language,
            waited: Some(waited),
        });
        tracing::info!(
            call = key.0,
            waited_s = waited.as_secs_f64(),
            "callback connected"
        );
        self.gauges_changed = true;
    }

    /// The caller did not answer (busy, no answer, failure), or could not
    /// be called: the agent is let go; the callback goes back to its place
    /// until the retry time, or fails after its last attempt.
    pub(super) fn callback_attempt_failed(&mut self, now: Now, key: CallId, code: u16) {
        let caller = self.caller_id(key);
        let Some(cb) = self.callbacks.get_mut(&key) else {
            return;
        };
        let agent_leg = cb.agent_leg.take();
        let trunk_leg = cb.trunk_leg.take();
        cb.agent = None;
        cb.exit = None;
        cb.record.last_code = Some(code);
        let (language, queue) = (cb.language, cb.record.queue.clone());
        let retry_at = now.wall + chrono::Duration::from_std(cb.retry_after).unwrap_or_default();
        let last = cb.record.attempts_made >= cb.record.attempts || retry_at >= cb.deadline;
        cb.retry_at = Some(retry_at);
        if let Some(leg) = agent_leg {
            self.drop_agent_leg(now, leg);
            self.legs.remove(&leg);
        }
        // Still ringing the caller (the agent gave up): cancelled.
        if let Some(leg) = trunk_leg.filter(|l| self.trunk_legs.contains_key(l)) {
            self.hang_up_trunk_leg(now, leg);
        }
        let _ = self.queue.call_ended(now, &caller);
        let mut e = self.queue_event(now, key, qe::CALLBACK_ATTEMPT_FAILED, &queue, language);
        e.code = Some(code);
        self.log_queue(e);
        tracing::info!(call = key.0, code, last, "callback attempt did not connect");
        if last {
            self.callback_over(now, key, state::FAILED, "no attempt connected");
            return;
        }
        if let Some(cb) = self.callbacks.get_mut(&key) {
            let record = cb.touch(now);
            self.outputs.push_back(Output::Callback(record));
        }
        self.rejoin(now, key);
    }

    /// The callback's deadline passed in the queue.
    pub(super) fn callback_expired(&mut self, now: Now, key: CallId) {
        self.callback_over(now, key, state::EXPIRED, "deadline passed");
    }

    /// A callback that will not connect: recorded, counted, forgotten.
    fn callback_over(&mut self, now: Now, key: CallId, end: &str, why: &str) {
        let caller = self.caller_id(key);
        let Some(mut cb) = self.callbacks.remove(&key) else {
            return;
        };
        if self.queue.is_queued(&caller) {
            self.queue.leave(now, &caller, crate::acd::Leave::Left);
        }
        cb.record.state = end.to_string();
        let record = cb.touch(now);
        self.outputs.push_back(Output::Callback(record));
        let mut e = self.queue_event(now, key, qe::CALLBACK_FAILED, &cb.record.queue, cb.language);
        e.call_id = Some(cb.record.call_record.clone());
        e.reason = Some(end.to_string());
        e.wait_ms = Some(now.wall_ms() - cb.record.joined_ms);
        self.log_queue(e);
        self.observe(Observation::Callback {
            event: callback_event::FAILED,
            language: cb.language,
            waited: None,
        });
        tracing::info!(
            call = key.0,
            callback = cb.record.id,
            state = end,
            why,
            "callback given up"
        );
        self.gauges_changed = true;
    }

    /// A callback's call is over (either side hung up after they talked):
    /// the agent wraps up, the other leg is ended.
    pub(super) fn callback_call_ended(&mut self, now: Now, key: CallId) {
        let caller = self.caller_id(key);
        let Some(cb) = self.callbacks.remove(&key) else {
            return;
        };
        if let Some(leg) = cb.agent_leg {
            self.drop_agent_leg(now, leg);
            self.legs.remove(&leg);
        }
        if let Some(leg) = cb.trunk_leg {
            self.hang_up_trunk_leg(now, leg);
        }
        self.media.close(agent_media_key(key));
        let _ = self.queue.call_ended(now, &caller);
        tracing::info!(call = key.0, callback = cb.record.id, "callback call ended");
        self.gauges_changed = true;
    }

    /// The queue's exit of a callback: an agent's answer is counted once
    /// the caller answers too; any other exit at once.
    pub(super) fn callback_left(&mut self, now: Now, key: CallId, exit: &QueueExit) {
        match (&exit.outcome, self.callbacks.get_mut(&key)) {
            (LeaveOutcome::Answered { .. }, Some(cb)) => cb.exit = Some(exit.clone()),
            _ => self.record_left(now, key, exit),
        }
    }

    /// Every callback not yet given up, oldest place first.
    pub fn callback_summaries(&self, now: Now) -> Vec<CallbackSummary> {
        let mut out: Vec<CallbackSummary> = self
            .callbacks
            .values()
            .map(|cb| CallbackSummary {
                id: cb.record.id,
                queue: cb.record.queue.clone(),
                language: cb.language,
                state: match (cb.connected, cb.agent.is_some()) {
                    (true, _) => "connected",
                    (false, true) => "calling",
                    (false, false) => "pending",
                },
                waited_seconds: now.since_wall(cb.joined_at).as_secs_f64(),
                attempts_made: cb.record.attempts_made,
                attempts: cb.record.attempts,
                retry_at: cb
                    .retry_at
                    .filter(|t| *t > now.wall)
                    .map(|t| t.timestamp_millis() as f64 / 1000.0),
                outside_window: cb.outside_window,
                window: cb.record.window.clone(),
                agent: cb.agent.as_ref().map(|a| a.as_str().to_string()),
            })
            .collect();
        out.sort_by(|a, b| b.waited_seconds.total_cmp(&a.waited_seconds));
        out
    }

    /// Callbacks waiting (not yet connected), by language.
    pub fn callbacks_pending(&self) -> Vec<(Language, usize)> {
        let mut by: std::collections::BTreeMap<Language, usize> = Default::default();
        for cb in self.callbacks.values().filter(|c| !c.connected) {
            *by.entry(cb.language).or_default() += 1;
        }
        by.into_iter().collect()
    }
}
