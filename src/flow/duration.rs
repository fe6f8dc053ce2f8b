//! Durations as operators write them: `30s`, `5m`, `1h`, `1m30s`, `500ms`.

use std::time::Duration;

/// Parses a duration; every number needs a unit so `30` is never guessed.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: write e.g. `30s` or `5m`".into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(format!(
                "invalid duration `{text}`: write e.g. `30s`, `5m`, `1h` or `1m30s`"
            ));
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration `{text}`"))?;
        let unit_len = tail.chars().take_while(char::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "duration `{text}` needs a unit: ms, s, m or h (e.g. `{value}s`)"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{text}`: use ms, s, m or h"
                ))
            }
        };
        total_ms = total_ms.saturating_add(value.saturating_mul(scale));
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Writes a duration back in the same notation, for messages and reports.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut s = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        assert!(parse("30").unwrap_err().contains("needs a unit"));
        assert!(parse("3d").unwrap_err().contains("unknown unit"));
        assert!(parse("s").is_err());
        assert!(parse("").is_err());
        assert!(parse("99999999999s").is_err());
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
