//! Reading `agents.yaml`: located errors, the size bound and proficiencies.

use serde_saphyr::{Location, MessageFormatter, Spanned};
use std::fmt;
use std::path::{Path, PathBuf};

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
