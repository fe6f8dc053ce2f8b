//! The queues the ACD runs, taken from the flow set: `queues.yaml` names each
//! queue and its settings, and the flows' queue steps add escalation tiers.
//! One source of truth, checked by `flows check` and reloaded with the flows.

use super::config::{EscalationTier, NoAgentsPolicy, QueueConfig, QueuesConfig};
use crate::flow::model::{NoAgents, StepKind};
use crate::flow::FlowSet;
use crate::language::Language;

/// Queue names may hold `{lang}`; these are the names a flow can reach.
fn expand(name: &str, languages: &[Language]) -> Vec<(String, Option<Language>)> {
    if name.contains("{lang}") {
        languages
            .iter()
            .map(|l| (name.replace("{lang}", l.code()), Some(*l)))
            .collect()
    } else {
        vec![(name.to_string(), None)]
    }
}

/// Builds the ACD's queue configuration from a validated flow set.
pub fn queues_from_flows(set: &FlowSet) -> QueuesConfig {
    let mut queues: Vec<QueueConfig> = set
        .queues
        .values()
        .map(|def| {
            let mut q = QueueConfig::new(&def.name);
            for skill in &def.skills {
                match skill.parse::<Language>() {
                    Ok(l) => q.languages.push(l),
                    Err(_) => q.topics.push(skill.clone()),
                }
            }
            if let Some(n) = def.max_waiting {
                q.max_length = n as usize;
            }
            if let Some(d) = def.max_wait {
                q.max_wait = d;
            }
            if let Some(d) = def.ring_timeout {
                q.ring_timeout = d;
            }
            if let Some(d) = def.wrap_up {
                q.wrap_up = d;
            }
            if let Some(d) = def.announce_every {
                q.announce_interval = d;
            }
            if let Some(p) = def.pause_on_no_answer {
                q.pause_on_no_answer = p;
            }
            if let Some(d) = def.short_abandon {
                q.short_abandon_threshold = d;
            }
            if let Some(p) = def.min_proficiency {
                q.min_proficiency = p;
            }
            q.no_agents = match &def.no_agents {
                None | Some(NoAgents::Wait) => NoAgentsPolicy::Wait,
                Some(NoAgents::Reject) => NoAgentsPolicy::Reject,
                Some(NoAgents::Fallback { language, .. }) => NoAgentsPolicy::Fallback(*language),
            };
            q
        })
        .collect();

    // `escalate: { after: 5m, to: advice_en }` on a queue step: after that wait
    // the caller may also be answered by the other queue's language speakers.
    for flow in &set.flows {
        for step in &flow.steps {
            let StepKind::Queue(qs) = &step.kind else {
                continue;
            };
            let Some(esc) = &qs.escalate else { continue };
            for (from, lang) in expand(&qs.queue, &set.languages) {
                let target = match lang {
                    Some(l) => esc.queue.replace("{lang}", l.code()),
                    None => esc.queue.clone(),
                };
                if target == from {
                    continue;
                }
                let add: Vec<Language> = set
                    .queues
                    .get(&target)
                    .map(|t| t.skills.iter().filter_map(|s| s.parse().ok()).collect())
                    .unwrap_or_default();
                let Some(q) = queues.iter_mut().find(|q| q.name == from) else {
                    continue;
                };
                if add.is_empty() || q.escalation.iter().any(|t| t.after == esc.after) {
                    continue;
                }
                let min_proficiency = q.min_proficiency;
                q.escalation.push(EscalationTier {
                    after: esc.after,
                    add_languages: add,
                    min_proficiency,
                });
                q.escalation.sort_by_key(|t| t.after);
            }
        }
    }
    QueuesConfig { queues }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn default_flows_give_one_queue_per_language_with_escalation_to_english() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ivr-flows");
        let set = FlowSet::load(&dir).expect("default flows");
        let config = queues_from_flows(&set);
        let ar = config.get("advice_ar").expect("advice_ar");
        assert_eq!(ar.languages, vec![Language::Ar]);
        assert_eq!(ar.topics, vec!["advice".to_string()]);
        assert_eq!(ar.escalation.len(), 1);
        assert_eq!(ar.escalation[0].after, Duration::from_secs(300));
        assert_eq!(ar.escalation[0].add_languages, vec![Language::En]);
        let en = config.get("advice_en").expect("advice_en");
        assert!(
            en.escalation.is_empty(),
            "English callers have no one else to go to"
        );
        assert_eq!(config.queues.len(), 7);
    }

    #[test]
    fn settings_in_queues_yaml_reach_the_queue() {
        let catalogue: String = std::iter::once("prompts:\n  welcome:\n".to_string())
            .chain(
                Language::ALL
                    .iter()
                    .map(|l| format!("    {}: Welcome\n", l.code())),
            )
            .collect();
        let sources = crate::flow::Sources {
            dir: "flows".into(),
            files: vec![
                (
                    "flows/queues.yaml".into(),
                    "queues:\n  general: { skills: [advice, pl], min_proficiency: 6, \
                     max_wait: 30m, no_agents: { fallback: en, play: welcome } }\n  \
                     english: { skills: [advice, en] }\n"
                        .to_string(),
                ),
                (
                    "flows/main.yaml".into(),
                    "entries: { default: main }\nflows:\n  main:\n    steps:\n      - queue: { to: general, \
                     escalate: { after: 60s, to: english } }\n"
                        .to_string(),
                ),
            ],
            catalogue: Some(("flows/prompts.yaml".into(), catalogue)),
            audio: None,
            unreadable: false,
        };
        let (set, diags) = crate::flow::load_sources(&sources);
        let set = set.unwrap_or_else(|| panic!("{diags:#?}"));
        let config = queues_from_flows(&set);
        let q = config.get("general").expect("queue");
        assert_eq!(q.max_wait, Duration::from_secs(1800));
        assert_eq!(q.no_agents, NoAgentsPolicy::Fallback(Language::En));
        assert_eq!(q.tier_after(Duration::from_secs(59)), 0);
        assert_eq!(q.tier_after(Duration::from_secs(60)), 1);
        assert_eq!(
            q.requirement(Language::Pl, 1),
            crate::acd::config::Requirement {
                languages: vec![Language::Pl, Language::En],
                min_proficiency: 6
            }
        );
        assert_eq!(q.short_abandon_threshold, Duration::from_secs(5));
    }
}
