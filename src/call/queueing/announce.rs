//! What a waiting caller hears over the hold music, in their language:
//! position and estimated wait, long-wait messages, and the prompts for an
//! escalation or a fallback to another language's agents.

use super::super::{CallManager, MediaControl};
use crate::acd::QueueService;
use crate::cdr::{queue_event as qe, QueueEventInfo};
use crate::flow::model::NoAgents;
use crate::ids::CallId;
use crate::language::Language;
use crate::time::Now;
use std::time::Duration;

/// Announcement play ids live in their own range so that a late
/// `PlaybackFinished` for one is never taken for the flow's.
const ANNOUNCEMENT_PLAY_ID: u64 = 1 << 62;

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// "You are number N in the queue. The estimated waiting time is about M
    /// minutes." In the caller's language, said only with recordings that
    /// exist (a number with no recording is left out rather than mis-said).
    pub(super) fn announce(
        &mut self,
        key: CallId,
        position: usize,
        estimated: Option<Duration>,
        first: bool,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let Some(q) = &call.queued else { return };
        let language = q.language;
        let catalogue = &call.bundle.flows.catalogue;
        let has = |id: &str| catalogue.text(id, language).is_some();
        let mut ids: Vec<String> = Vec::new();
        if first && has("queue_joined") {
            ids.push("queue_joined".into());
        }
        let number = format!("number.{position}");
        if position > 0 && has(&number) && has("queue_position_prefix") {
            ids.push("queue_position_prefix".into());
            ids.push(number);
            if has("queue_position_suffix") {
                ids.push("queue_position_suffix".into());
            }
        }
        if let Some(wait) = estimated {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            // Round up to the next whole recording: never promise less.
            if let Some(m) = (minutes..=60).find(|m| has(&format!("wait_minutes.{m}"))) {
                if has("wait_about") {
                    ids.push("wait_about".into());
                    ids.push(format!("wait_minutes.{m}"));
                }
            } else if has("wait_over_hour") {
                ids.push("wait_over_hour".into());
            }
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.play_announcement(key, &refs);
    }

    /// The caller may now go to more agents: logged, and said to callers who
    /// do not speak English (the usual added language).
    pub(super) fn escalated(&mut self, now: Now, key: CallId, tier: usize) {
        tracing::info!(call = key.0, tier, "queue escalated");
        let info = QueueEventInfo::Number("tier", tier as u64);
        let language = self.log_queued_event(now, key, qe::ESCALATED, info);
        if language.is_some_and(|l| l != Language::En) {
            self.play_announcement(key, &["queue_escalated"]);
        }
    }

    /// Agents of `language` may take the caller too: logged, and the queue's
    /// fallback prompt is said once.
    pub(super) fn fell_back(&mut self, now: Now, key: CallId, language: Language) {
        tracing::info!(
            call = key.0,
            fallback = language.code(),
            "queue falls back to another language"
        );
        let info = QueueEventInfo::Text("language", language.code());
        self.log_queued_event(now, key, qe::FALLBACK, info);
        if let Some(prompt) = self.fallback_prompt(key) {
            self.play_announcement(key, &[prompt.as_str()]);
        }
    }

    /// The caller's wait message `index` (from the flow's queue step).
    pub(super) fn wait_message(&mut self, key: CallId, index: usize) {
        let prompts = self
            .calls
            .get(&key)
            .and_then(|c| c.queued.as_ref())
            .and_then(|q| q.messages.get(index))
            .cloned()
            .unwrap_or_default();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        self.play_announcement(key, &refs);
    }

    /// What a caller hears when their queue falls back to another language
    /// (`no_agents: { fallback: en, play: ... }` in queues.yaml).
    fn fallback_prompt(&self, key: CallId) -> Option<String> {
        let call = self.calls.get(&key)?;
        let queue = &call.queued.as_ref()?.queue;
        match &call.bundle.flows.queues.get(queue)?.no_agents {
            Some(NoAgents::Fallback { play, .. }) => play.clone(),
            _ => None,
        }
    }

    /// Plays prompts over the hold music (which resumes after).
    pub(in crate::call) fn play_announcement(&mut self, key: CallId, ids: &[&str]) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(q) = &call.queued else { return };
        let language = q.language;
        let clips: Vec<_> = ids
            .iter()
            .filter_map(|id| call.bundle.prompts.clip(id, language))
            .collect();
        if clips.is_empty() {
            return;
        }
        tracing::info!(call = key.0, prompts = ?ids, language = language.code(), "queue announcement");
        call.announcements += 1;
        let play_id = ANNOUNCEMENT_PLAY_ID + call.announcements;
        self.media.play(key, play_id, clips);
    }

    pub(in crate::call) fn is_announcement(play_id: u64) -> bool {
        play_id >= ANNOUNCEMENT_PLAY_ID
    }
}
