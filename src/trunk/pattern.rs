//! Dial patterns: which numbers a trunk may dial, in the notation PBX
//! operators know from dial plans.
//!
//! - `0`–`9`, `+`, `*`, `#` match themselves;
//! - `X` any digit, `Z` 1–9, `N` 2–9;
//! - `[1-35]` one digit of a set (ranges and single digits);
//! - a final `.` one or more further digits.
//!
//! A number matches when the whole of it matches: `+47XXXXXXXX` takes
//! `+4722000000` and nothing longer. Letters are case-insensitive.

use std::fmt;

/// Longest pattern accepted, in characters.
const MAX_PATTERN_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Literal(u8),
    /// One digit out of a set (bit `d` set for digit `d`).
    Digits(u16),
}

/// One parsed pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct DialPattern {
    text: String,
    elements: Vec<Element>,
    /// Ends in `.`: one or more digits follow.
    open_tail: bool,
}

impl fmt::Debug for DialPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DialPattern({})", self.text)
    }
}

impl fmt::Display for DialPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const ALL_DIGITS: u16 = 0b11_1111_1111;

/// What the notation allows, said in every error.
const NOTATION: &str =
    "use digits, `+`, X (any digit), Z (1-9), N (2-9), [1-5] sets and a final `.` (more digits)";

impl DialPattern {
    pub fn parse(text: &str) -> Result<DialPattern, String> {
        if text.is_empty() {
            return Err(format!("an empty dial pattern matches nothing; {NOTATION}"));
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "dial pattern longer than {MAX_PATTERN_LEN} characters"
            ));
        }
        let bytes = text.as_bytes();
        let mut elements = Vec::new();
        let mut open_tail = false;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            i += 1;
            let element = match b.to_ascii_uppercase() {
                b'0'..=b'9' | b'+' | b'*' | b'#' => Element::Literal(b),
                b'X' => Element::Digits(ALL_DIGITS),
                b'Z' => Element::Digits(ALL_DIGITS & !1),
                b'N' => Element::Digits(ALL_DIGITS & !0b11),
                b'.' if i == bytes.len() => {
                    open_tail = true;
                    continue;
                }
                b'.' => {
                    return Err(format!(
                        "dial pattern `{text}`: `.` may only end a pattern; {NOTATION}"
                    ))
                }
                b'[' => {
                    let close = bytes
                        .get(i..)
                        .and_then(|rest| rest.iter().position(|&c| c == b']'))
                        .ok_or_else(|| format!("dial pattern `{text}`: `[` is never closed"))?;
                    let set = digit_set(bytes.get(i..i + close).unwrap_or_default()).ok_or_else(
                        || {
                            format!(
                                "dial pattern `{text}`: a set holds digits and ranges like [1-35]"
                            )
                        },
                    )?;
                    i += close + 1;
                    Element::Digits(set)
                }
                _ => {
                    return Err(format!(
                        "dial pattern `{text}`: `{}` is not allowed; {NOTATION}",
                        char::from(b)
                    ))
                }
            };
            elements.push(element);
        }
        if elements.is_empty() {
            return Err(format!("dial pattern `{text}` matches any number at all; start it with the digits you mean"));
        }
        Ok(DialPattern {
            text: text.to_string(),
            elements,
            open_tail,
        })
    }

    /// Whether the whole `number` matches.
    pub fn matches(&self, number: &str) -> bool {
        let bytes = number.as_bytes();
        if bytes.len() < self.elements.len() {
            return false;
        }
        let (head, tail) = bytes.split_at(self.elements.len());
        let head_ok = head.iter().zip(&self.elements).all(|(&b, e)| match e {
            Element::Literal(l) => b == *l,
            Element::Digits(set) => b.is_ascii_digit() && set & (1 << (b - b'0')) != 0,
        });
        let tail_ok = if self.open_tail {
            !tail.is_empty() && tail.iter().all(u8::is_ascii_digit)
        } else {
            tail.is_empty()
        };
        head_ok && tail_ok
    }
}

/// `1-35` → {1,2,3,5}; `None` for anything else.
fn digit_set(inner: &[u8]) -> Option<u16> {
    let mut set = 0u16;
    let mut i = 0;
    while let Some(&b) = inner.get(i) {
        if !b.is_ascii_digit() {
            return None;
        }
        let from = b - b'0';
        let to = if inner.get(i + 1) == Some(&b'-') {
            let end = *inner.get(i + 2).filter(|c| c.is_ascii_digit())? - b'0';
            i += 3;
            end
        } else {
            i += 1;
            from
        };
        if to < from {
            return None;
        }
        for d in from..=to {
            set |= 1 << d;
        }
    }
    (set != 0).then_some(set)
}

impl<'de> serde::Deserialize<'de> for DialPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DialPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> DialPattern {
        DialPattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn literals_classes_sets_and_tails() {
        assert!(p("112").matches("112"));
        assert!(!p("112").matches("1120"));
        assert!(!p("112").matches("11"));
        let norway = p("+47XXXXXXXX");
        assert!(norway.matches("+4722000000"));
        assert!(!norway.matches("+472200000"));
        assert!(!norway.matches("+47220000001"));
        assert!(!norway.matches("+4622000000"));
        assert!(p("+47[2-9]XXXXXXX").matches("+4791234567"));
        assert!(!p("+47[2-9]XXXXXXX").matches("+4711234567"));
        assert!(p("[1-35]").matches("5") && !p("[1-35]").matches("4"));
        assert!(p("n").matches("2") && !p("N").matches("1"));
        assert!(p("Z").matches("1") && !p("Z").matches("0"));
        let any_after = p("0047.");
        assert!(any_after.matches("00471"));
        assert!(any_after.matches("004722000000"));
        assert!(!any_after.matches("0047"));
        assert!(!any_after.matches("0047a"));
        // Not a digit where a digit class stands.
        assert!(!p("X").matches("+"));
    }

    #[test]
    fn bad_patterns_say_what_is_allowed() {
        for bad in ["", ".", "12.3", "[", "[]", "[a]", "[5-1]", "+47 XX", "A"] {
            let e = DialPattern::parse(bad).expect_err(bad);
            assert!(!e.is_empty());
        }
        assert!(DialPattern::parse("4a")
            .expect_err("letter")
            .contains("X (any digit)"));
        assert!(DialPattern::parse(&"1".repeat(65)).is_err());
    }
}
