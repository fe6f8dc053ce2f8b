//! The queues the ACD runs, as it sees them. They are read from the flow
//! set's `queues.yaml` and queue steps (`from_flows.rs`), which the flow loader
//! checks with `file:line:col` errors.

use crate::language::Language;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What to do with a caller when no agent is logged in for the language.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NoAgentsPolicy {
    /// Queue anyway (an agent may log in).
    #[default]
    Wait,
    /// Do not queue: the flow plays its message and goes on.
    Reject,
    /// Queue in this language instead, if someone speaks it.
    Fallback(Language),
}

/// After `after` in the queue, a caller may also be given to agents with these
/// extra languages, and to agents down to `min_proficiency`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationTier {
    pub after: Duration,
    pub add_languages: Vec<Language>,
    pub min_proficiency: u8,
}

/// One queue, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub name: String,
    /// Caller languages this queue takes; empty means all.
    pub languages: Vec<Language>,
    /// Topics an agent must have (any proficiency) to serve this queue.
    pub topics: Vec<String>,
    /// Minimum proficiency before any escalation.
    pub min_proficiency: u8,
    pub max_length: usize,
    pub max_wait: Duration,
    /// Zero: only the announcement on joining.
    pub announce_interval: Duration,
    pub ring_timeout: Duration,
    pub pause_on_no_answer: bool,
    /// When missed offers do not pause: how long before the same agent is
    /// offered a call again.
    pub reoffer_delay: Duration,
    pub wrap_up: Duration,
    pub short_abandon_threshold: Duration,
    pub no_agents: NoAgentsPolicy,
    /// Tiers in order of `after`; each widens the one before.
    pub escalation: Vec<EscalationTier>,
    /// Mean handle time assumed before any call was handled.
    pub handle_time_prior: Duration,
}

impl QueueConfig {
    /// A queue with the defaults, for tests and code-built setups.
    pub fn new(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.to_string(),
            languages: Vec::new(),
            topics: Vec::new(),
            min_proficiency: 1,
            max_length: 500,
            max_wait: Duration::from_secs(3600),
            announce_interval: Duration::from_secs(60),
            ring_timeout: Duration::from_secs(20),
            pause_on_no_answer: true,
            reoffer_delay: Duration::from_secs(5),
            wrap_up: Duration::from_secs(10),
            short_abandon_threshold: Duration::from_secs(5),
            no_agents: NoAgentsPolicy::Wait,
            escalation: Vec::new(),
            handle_time_prior: Duration::from_secs(180),
        }
    }

    pub fn accepts(&self, language: Language) -> bool {
        self.languages.is_empty() || self.languages.contains(&language)
    }

    /// The tier a caller is in after waiting `waited`: 0 is the base.
    pub fn tier_after(&self, waited: Duration) -> usize {
        self.escalation.iter().filter(|t| t.after <= waited).count()
    }

    /// Languages and minimum proficiency at `tier` for a caller of `language`.
    pub fn requirement(&self, language: Language, tier: usize) -> Requirement {
        let mut languages = vec![language];
        let mut min_proficiency = self.min_proficiency;
        for t in self.escalation.iter().take(tier) {
            for l in &t.add_languages {
                if !languages.contains(l) {
                    languages.push(*l);
                }
            }
            min_proficiency = t.min_proficiency;
        }
        Requirement {
            languages,
            min_proficiency,
        }
    }
}

/// Who may take a call: any of `languages` (the caller's own first) at
/// `min_proficiency` or above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub languages: Vec<Language>,
    pub min_proficiency: u8,
}

/// Every queue, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueuesConfig {
    pub queues: Vec<QueueConfig>,
}

impl QueuesConfig {
    pub fn get(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_widen_languages_then_lower_the_proficiency() {
        let mut q = QueueConfig::new("general");
        q.min_proficiency = 6;
        q.escalation = vec![
            EscalationTier {
                after: Duration::from_secs(60),
                add_languages: vec![Language::En],
                min_proficiency: 6,
            },
            EscalationTier {
                after: Duration::from_secs(120),
                add_languages: Vec::new(),
                min_proficiency: 1,
            },
        ];
        assert_eq!(q.tier_after(Duration::from_secs(59)), 0);
        assert_eq!(q.tier_after(Duration::from_secs(60)), 1);
        assert_eq!(
            q.requirement(Language::Pl, 1),
            Requirement {
                languages: vec![Language::Pl, Language::En],
                min_proficiency: 6
            }
        );
        assert_eq!(q.requirement(Language::Pl, 2).min_proficiency, 1);
        assert_eq!(q.short_abandon_threshold, Duration::from_secs(5));
    }
}
