//! "Did you mean …?": the known name closest to a misspelt one, by edit
//! distance, offered only when it is close enough to be a slip of the keys.

/// Names longer than this are not compared (bounds the work per name).
const MAX_LEN: usize = 128;

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// swaps of two neighbouring characters each cost one (`closd` → `closed` is
/// 1, `huose` → `house` is 1, `abcd` → `badc` is 2).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous (for swaps), previous, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && a[i - 1] == *cb && b[j - 1] == *ca {
                best = best.min(before[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The known name closest to `wrong`, if it is at most a third of `wrong`'s
/// length (and at least one) edits away. Among equally close names the first
/// given wins, so a sorted list gives a stable answer.
pub fn closest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = wrong.chars().count();
    if len > MAX_LEN {
        return None;
    }
    let limit = (len / 3).max(1);
    let wrong_lower = wrong.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for name in known {
        if name == wrong || name.chars().count() > MAX_LEN {
            continue;
        }
        let d = distance(&wrong_lower, &name.to_lowercase());
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, name));
        }
    }
    best.map(|(_, name)| name)
}

/// `; did you mean `x`?` when a known name is close, else nothing: to append
/// to an "unknown …" message.
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    match closest(wrong, known) {
        Some(name) => format!("; did you mean `{name}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("closd", "closed"), 1);
        assert_eq!(distance("lang_confirmd", "lang_confirmed"), 1);
        assert_eq!(distance("barge_inn", "barge_in"), 1);
        assert_eq!(distance("qeue", "queue"), 1);
        assert_eq!(distance("abcd", "badc"), 2, "two swaps");
        assert_eq!(distance("huose", "house"), 1, "a swap is one edit");
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ærlig", "arlig"), 1, "characters, not bytes");
    }

    #[test]
    fn only_close_names_are_suggested() {
        let known = ["closed", "confirm", "main_menu", "welcome"];
        assert_eq!(closest("closd", known), Some("closed"));
        assert_eq!(closest("Closed", known), Some("closed"));
        assert_eq!(closest("welcom", known), Some("welcome"));
        assert_eq!(closest("main_mneu", known), Some("main_menu"));
        assert_eq!(closest("nowhere", known), None);
        assert_eq!(closest("x", known), None);
        // Short names allow one edit only.
        assert_eq!(closest("q_xx", ["q_nb", "q_en"]), None);
        assert_eq!(closest("q_nbb", ["q_nb", "q_en"]), Some("q_nb"));
        // Ties go to the first given.
        assert_eq!(closest("ab", ["aa", "bb"]), Some("aa"));
        assert_eq!(
            did_you_mean("lang_confirmd", ["lang_choice", "lang_confirmed"]),
            "; did you mean `lang_confirmed`?"
        );
        assert_eq!(did_you_mean("zzz", known), "");
        assert_eq!(closest(&"a".repeat(1000), ["a"]), None);
    }
}
