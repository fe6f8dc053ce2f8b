//! Durations as operators write them, in every file they edit (flows,
//! `queues.yaml`, `agents.yaml`) and on the command line: `30s`, `5m`, `1h`,
//! `1m30s`, `500ms`. A number always has a unit, so `30` is never guessed.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
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

/// A duration read from a serde file (`agents.yaml`): the same syntax as
/// [`parse`], with the same message for a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written(pub Duration);

impl<'de> Deserialize<'de> for Written {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Written;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s, 2m or 1h")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Written, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Written, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Written, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Written, E> {
                parse(v).map(Written).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
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
    fn files_read_the_same_syntax() {
        #[derive(Deserialize)]
        struct File {
            wait: Written,
        }
        let read = |text: &str| serde_saphyr::from_str::<File>(text).map(|f| f.wait.0);
        assert_eq!(read("wait: 1m30s").ok(), Some(Duration::from_secs(90)));
        let bare = read("wait: 30").expect_err("no unit").to_string();
        assert!(
            bare.contains("needs a unit") && bare.contains("`30s`"),
            "{bare}"
        );
        assert!(read("wait: -5").is_err());
        assert!(read("wait: 2.5").is_err());
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
