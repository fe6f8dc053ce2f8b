//! The seven languages the hotline speaks, identified by their ISO 639-1 codes.
//!
//! The codes are part of the external contract: they are the `language` label of
//! every metric, the folder names of rendered prompt audio and the keys of the
//! prompt catalogue.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A language a caller can choose. The order of the variants is the order of the
/// language menu (digit 1 = Norwegian ... digit 7 = Lithuanian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Nb,
    En,
    Ar,
    Pl,
    Ru,
    Ro,
    Lt,
}

impl Language {
    /// Every language, in menu order.
    pub const ALL: [Language; 7] = [
        Language::Nb,
        Language::En,
        Language::Ar,
        Language::Pl,
        Language::Ru,
        Language::Ro,
        Language::Lt,
    ];

    /// The ISO 639-1 code used in metrics, file names and the catalogue.
    pub fn code(self) -> &'static str {
        match self {
            Language::Nb => "nb",
            Language::En => "en",
            Language::Ar => "ar",
            Language::Pl => "pl",
            Language::Ru => "ru",
            Language::Ro => "ro",
            Language::Lt => "lt",
        }
    }

    /// The language's name in the language itself, as the menu says it.
    pub fn native_name(self) -> &'static str {
        match self {
            Language::Nb => "Norsk",
            Language::En => "English",
            Language::Ar => "العربية",
            Language::Pl => "Polski",
            Language::Ru => "Русский",
            Language::Ro => "Română",
            Language::Lt => "Lietuvių",
        }
    }

    /// Whether text in this language is written right to left.
    pub fn is_rtl(self) -> bool {
        matches!(self, Language::Ar)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Returned when a string is not one of the seven language codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language `{0}`: expected one of nb, en, ar, pl, ru, ro, lt")]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Language::ALL
            .into_iter()
            .find(|l| l.code() == s)
            .ok_or_else(|| UnknownLanguage(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_in_menu_order() {
        let codes: Vec<&str> = Language::ALL.iter().map(|l| l.code()).collect();
        assert_eq!(codes, ["nb", "en", "ar", "pl", "ru", "ro", "lt"]);
        for l in Language::ALL {
            assert_eq!(l.code().parse::<Language>(), Ok(l));
        }
        assert!("no".parse::<Language>().is_err());
    }
}
