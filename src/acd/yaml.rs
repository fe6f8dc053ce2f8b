//! Reading `agents.yaml`: located errors, the size bound and proficiencies.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, MessageFormatter, Spanned};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest file accepted, so a wrong path (a log, an image) fails fast.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// One problem in a file, printed `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    pub fn at(file: &Path, location: Location, message: impl Into<String>) -> SourceError {
        SourceError {
            file: file.to_path_buf(),
            line: location.line().max(1),
            column: location.column().max(1),
            message: message.into(),
        }
    }

    /// An error about a whole file (unreadable, too large).
    pub fn file(file: &Path, message: impl Into<String>) -> SourceError {
        SourceError {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
        }
    }

    pub fn from_yaml(file: &Path, err: &serde_saphyr::Error) -> SourceError {
        let message = serde_saphyr::DefaultMessageFormatter
            .format_message(err)
            .into_owned();
        match err.location() {
            Some(loc) => SourceError::at(file, loc, message),
            None => SourceError::file(file, message),
        }
    }
}

/// Reads a YAML file, bounded in size.
pub fn read_file(path: &Path) -> Result<String, SourceError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| SourceError::file(path, format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(SourceError::file(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| SourceError::file(path, format!("cannot read: {e}")))
}

/// A duration written as whole seconds (`30`) or with a unit (`30s`, `2m`,
/// `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seconds(pub Duration);

/// Longest duration accepted anywhere: a day.
const MAX_SECONDS: u64 = 86_400;

impl Seconds {
    pub fn parse(text: &str) -> Result<Seconds, String> {
        let t = text.trim();
        let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => t.split_at(i),
            None => (t, "s"),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: write e.g. 30s, 2m or 1h"))?;
        let factor = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => {
                return Err(format!(
                    "`{text}` is not a duration: write e.g. 30s, 2m or 1h"
                ))
            }
        };
        let secs = n.saturating_mul(factor);
        if secs > MAX_SECONDS {
            return Err(format!("`{text}` is longer than a day"));
        }
        Ok(Seconds(Duration::from_secs(secs)))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30, 30s, 2m or 1h")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                if v > MAX_SECONDS {
                    return Err(E::custom(format!("{v} seconds is longer than a day")));
                }
                Ok(Seconds(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                Seconds::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks a proficiency (1-10), returning an error at its place.
pub fn check_proficiency(file: &Path, value: &Spanned<u8>) -> Result<u8, SourceError> {
    if (1..=10).contains(&value.value) {
        Ok(value.value)
    } else {
        Err(SourceError::at(
            file,
            value.referenced,
            format!("proficiency {} is outside 1-10", value.value),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Seconds::parse("30"), Ok(Seconds(Duration::from_secs(30))));
        assert_eq!(Seconds::parse("2m"), Ok(Seconds(Duration::from_secs(120))));
        assert_eq!(Seconds::parse("1h"), Ok(Seconds(Duration::from_secs(3600))));
        assert!(Seconds::parse("2 weeks").is_err());
        assert!(Seconds::parse("").is_err());
        assert!(Seconds::parse("999999999999999999999h").is_err());
        assert!(Seconds::parse("25h").is_err());
    }
}
