//! `queues.yaml`: one entry per queue, checked with `file:line:col` errors.

use super::yaml::{check_proficiency, read_file, Seconds, SourceError};
use crate::language::Language;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Most queues one file may define, and most escalation tiers per queue.
pub const MAX_QUEUES: usize = 256;
pub const MAX_TIERS: usize = 16;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    queues: Vec<Spanned<RawQueue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    after: Spanned<Seconds>,
    #[serde(default)]
    add_languages: Vec<Language>,
    #[serde(default)]
    min_proficiency: Option<Spanned<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: Spanned<String>,
    #[serde(default)]
    languages: Vec<Language>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    min_proficiency: Option<Spanned<u8>>,
    #[serde(default)]
    max_length: Option<Spanned<usize>>,
    #[serde(default)]
    max_wait: Option<Seconds>,
    #[serde(default)]
    announce_interval: Option<Seconds>,
    #[serde(default)]
    ring_timeout: Option<Spanned<Seconds>>,
    #[serde(default)]
    pause_on_no_answer: Option<bool>,
    #[serde(default)]
    reoffer_delay: Option<Seconds>,
    #[serde(default)]
    wrap_up: Option<Seconds>,
    #[serde(default)]
    short_abandon_threshold: Option<Seconds>,
    #[serde(default)]
    no_agents: Option<NoAgentsPolicy>,
    #[serde(default)]
    escalation: Vec<Spanned<RawTier>>,
    #[serde(default)]
    handle_time_prior: Option<Spanned<Seconds>>,
}

/// Every queue, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueuesConfig {
    pub queues: Vec<QueueConfig>,
}

impl QueuesConfig {
    pub fn load(path: &Path) -> Result<QueuesConfig, Vec<SourceError>> {
        let text = read_file(path).map_err(|e| vec![e])?;
        QueuesConfig::parse(path, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<QueuesConfig, Vec<SourceError>> {
        let raw: RawFile =
            serde_saphyr::from_str(text).map_err(|e| vec![SourceError::from_yaml(file, &e)])?;
        if raw.queues.len() > MAX_QUEUES {
            return Err(vec![SourceError::file(
                file,
                format!("more than {MAX_QUEUES} queues"),
            )]);
        }
        let mut errors = Vec::new();
        let mut names = HashSet::new();
        let mut queues = Vec::new();
        for q in raw.queues {
            match convert_queue(file, q.value, &mut names) {
                Ok(q) => queues.push(q),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(QueuesConfig { queues })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }
}

fn convert_queue(
    file: &Path,
    q: RawQueue,
    names: &mut HashSet<String>,
) -> Result<QueueConfig, Vec<SourceError>> {
    let mut errors = Vec::new();
    let mut out = QueueConfig::new(&q.name.value);
    let name_ok = !q.name.value.is_empty()
        && q.name.value.len() <= 64
        && q.name
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !name_ok {
        errors.push(SourceError::at(
            file,
            q.name.referenced,
            "queue name must be 1-64 letters, digits, `-` or `_`",
        ));
    } else if !names.insert(q.name.value.clone()) {
        errors.push(SourceError::at(
            file,
            q.name.referenced,
            format!("queue `{}` is defined twice", q.name.value),
        ));
    }
    out.languages = q.languages;
    out.topics = q.topics;
    if let Some(p) = &q.min_proficiency {
        match check_proficiency(file, p) {
            Ok(v) => out.min_proficiency = v,
            Err(e) => errors.push(e),
        }
    }
    if let Some(m) = &q.max_length {
        if m.value == 0 || m.value > 100_000 {
            errors.push(SourceError::at(
                file,
                m.referenced,
                "max_length must be 1-100000",
            ));
        }
        out.max_length = m.value;
    }
    if let Some(v) = q.max_wait {
        out.max_wait = v.0;
    }
    if let Some(v) = q.announce_interval {
        out.announce_interval = v.0;
    }
    if let Some(r) = &q.ring_timeout {
        if r.value.0.is_zero() {
            errors.push(SourceError::at(
                file,
                r.referenced,
                "ring_timeout must be above zero",
            ));
        }
        out.ring_timeout = r.value.0;
    }
    if let Some(v) = q.pause_on_no_answer {
        out.pause_on_no_answer = v;
    }
    if let Some(v) = q.reoffer_delay {
        out.reoffer_delay = v.0;
    }
    if let Some(v) = q.wrap_up {
        out.wrap_up = v.0;
    }
    if let Some(v) = q.short_abandon_threshold {
        out.short_abandon_threshold = v.0;
    }
    if let Some(v) = q.no_agents {
        out.no_agents = v;
    }
    if let Some(h) = &q.handle_time_prior {
        if h.value.0.is_zero() {
            errors.push(SourceError::at(
                file,
                h.referenced,
                "handle_time_prior must be above zero",
            ));
        }
        out.handle_time_prior = h.value.0;
    }
    if q.escalation.len() > MAX_TIERS {
        errors.push(SourceError::at(
            file,
            q.name.referenced,
            format!("more than {MAX_TIERS} escalation tiers"),
        ));
    }
    let mut last_after = Duration::ZERO;
    let mut last_min = out.min_proficiency;
    for t in q.escalation.iter().take(MAX_TIERS) {
        let tier = &t.value;
        if tier.after.value.0 <= last_after {
            errors.push(SourceError::at(
                file,
                tier.after.referenced,
                "escalation tiers must come in order of `after`, each later than the one before",
            ));
        }
        last_after = tier.after.value.0;
        let min = match &tier.min_proficiency {
            None => last_min,
            Some(p) => match check_proficiency(file, p) {
                Ok(v) if v > last_min => {
                    errors.push(SourceError::at(
                        file,
                        p.referenced,
                        format!(
                            "escalation only widens: min_proficiency {v} is above the \
                             {last_min} before it"
                        ),
                    ));
                    v
                }
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    last_min
                }
            },
        };
        last_min = min;
        out.escalation.push(EscalationTier {
            after: tier.after.value.0,
            add_languages: tier.add_languages.clone(),
            min_proficiency: min,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<QueuesConfig, Vec<SourceError>> {
        QueuesConfig::parse(Path::new("queues.yaml"), text)
    }

    #[test]
    fn loads_queue_with_tiers() {
        let text = "queues:\n  - name: general\n    min_proficiency: 6\n    max_length: 50\n    \
                    max_wait: 30m\n    no_agents: {fallback: en}\n    escalation:\n      \
                    - after: 60s\n        add_languages: [en]\n      - after: 2m\n        \
                    min_proficiency: 1\n";
        let config = parse(text).expect("valid");
        let q = config.get("general").expect("queue");
        assert_eq!(q.max_wait, Duration::from_secs(1800));
        assert_eq!(q.no_agents, NoAgentsPolicy::Fallback(Language::En));
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

    #[test]
    fn errors_have_positions() {
        let text = "queues:\n  - name: a\n    min_proficiency: 5\n    escalation:\n      \
                    - after: 60s\n        min_proficiency: 3\n      - after: 30s\n";
        let errors = parse(text).expect_err("invalid");
        assert!(
            errors[0].to_string().starts_with("queues.yaml:7:"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 1);

        let text = "queues:\n  - name: a\n    ring_timeout: soon\n";
        let errors = parse(text).expect_err("invalid");
        assert!(
            errors[0].to_string().starts_with("queues.yaml:3:"),
            "{errors:?}"
        );

        let text = "queues:\n  - name: a\n  - name: a\n";
        let errors = parse(text).expect_err("invalid");
        assert!(
            errors[0].to_string().starts_with("queues.yaml:3:"),
            "{errors:?}"
        );

        let text = "queues:\n  - name: a\n    no_agents: sometimes\n";
        let errors = parse(text).expect_err("invalid");
        assert!(
            errors[0].to_string().starts_with("queues.yaml:3:"),
            "{errors:?}"
        );
    }
}
