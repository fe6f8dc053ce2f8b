//! CLDR plural categories for whole numbers in the seven languages, so that a
//! counted phrase ("3 minutes") takes the form its grammar asks for.
//!
//! Rules are those of CLDR's `plurals.xml` restricted to integers (`v = 0`,
//! so `n = i`); counts spoken to callers are never fractions.

use crate::language::Language;
use std::fmt;

/// A CLDR plural category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Zero,
    One,
    Two,
    Few,
    Many,
    Other,
}

impl Category {
    /// The CLDR keyword, used as the suffix of counted prompt ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Zero => "zero",
            Category::One => "one",
            Category::Two => "two",
            Category::Few => "few",
            Category::Many => "many",
            Category::Other => "other",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The category a whole number falls in.
pub fn category(language: Language, n: u64) -> Category {
    let n10 = n % 10;
    let n100 = n % 100;
    match language {
        Language::Nb | Language::En => {
            if n == 1 {
                Category::One
            } else {
                Category::Other
            }
        }
        Language::Ar => match n {
            0 => Category::Zero,
            1 => Category::One,
            2 => Category::Two,
            _ if (3..=10).contains(&n100) => Category::Few,
            _ if (11..=99).contains(&n100) => Category::Many,
            _ => Category::Other,
        },
        Language::Pl => {
            if n == 1 {
                Category::One
            } else if (2..=4).contains(&n10) && !(12..=14).contains(&n100) {
                Category::Few
            } else {
                Category::Many
            }
        }
        Language::Ru => {
            if n10 == 1 && n100 != 11 {
                Category::One
            } else if (2..=4).contains(&n10) && !(12..=14).contains(&n100) {
                Category::Few
            } else {
                Category::Many
            }
        }
        Language::Ro => {
            if n == 1 {
                Category::One
            } else if n == 0 || (1..=19).contains(&n100) {
                Category::Few
            } else {
                Category::Other
            }
        }
        Language::Lt => {
            if (11..=19).contains(&n100) {
                Category::Other
            } else if n10 == 1 {
                Category::One
            } else if n10 >= 2 {
                Category::Few
            } else {
                Category::Other
            }
        }
    }
}

/// Every category a whole number can fall in, so that a counted phrase can be
/// checked to have every form it will ever need.
pub fn integer_categories(language: Language) -> &'static [Category] {
    use Category::*;
    match language {
        Language::Nb | Language::En => &[One, Other],
        Language::Ar => &[Zero, One, Two, Few, Many, Other],
        Language::Pl | Language::Ru => &[One, Few, Many],
        Language::Ro | Language::Lt => &[One, Few, Other],
    }
}

#[cfg(test)]
mod tests {
    use super::Category::*;
    use super::*;

    /// Expands CLDR sample notation such as `2~4, 22~24, 102`.
    fn samples(spec: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for part in spec.split(',').map(str::trim) {
            match part.split_once('~') {
                Some((a, b)) => {
                    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                    out.extend(a..=b);
                }
                None => out.push(part.parse().unwrap()),
            }
        }
        out
    }

    fn check(language: Language, expected: Category, spec: &str) {
        for n in samples(spec) {
            assert_eq!(category(language, n), expected, "{language} {n}");
            assert!(integer_categories(language).contains(&expected));
        }
    }

    // Integer samples copied from CLDR's plurals.xml.
    #[test]
    fn norwegian_and_english() {
        for l in [Language::Nb, Language::En] {
            check(l, One, "1");
            check(l, Other, "0, 2~16, 100, 1000, 10000, 100000, 1000000");
        }
    }

    #[test]
    fn arabic() {
        let l = Language::Ar;
        check(l, Zero, "0");
        check(l, One, "1");
        check(l, Two, "2");
        check(l, Few, "3~10, 103~110, 1003");
        check(l, Many, "11~26, 111, 1011");
        check(
            l,
            Other,
            "100~102, 200~202, 300~302, 400~402, 500~502, 600, 1000, 10000, 100000, 1000000",
        );
    }

    #[test]
    fn polish() {
        let l = Language::Pl;
        check(l, One, "1");
        check(l, Few, "2~4, 22~24, 32~34, 42~44, 52~54, 62, 102, 1002");
        check(l, Many, "0, 5~19, 100, 1000, 10000, 100000, 1000000");
    }

    #[test]
    fn russian() {
        let l = Language::Ru;
        check(l, One, "1, 21, 31, 41, 51, 61, 71, 81, 101, 1001");
        check(l, Few, "2~4, 22~24, 32~34, 42~44, 52~54, 62, 102, 1002");
        check(l, Many, "0, 5~19, 100, 1000, 10000, 100000, 1000000");
    }

    #[test]
    fn romanian() {
        let l = Language::Ro;
        check(l, One, "1");
        check(l, Few, "0, 2~16, 101, 1001");
        check(l, Other, "20~35, 100, 1000, 10000, 100000, 1000000");
    }

    #[test]
    fn lithuanian() {
        let l = Language::Lt;
        check(l, One, "1, 21, 31, 41, 51, 61, 71, 81, 101, 1001");
        check(l, Few, "2~9, 22~29, 102, 1002");
        check(
            l,
            Other,
            "0, 10~20, 30, 40, 50, 60, 100, 1000, 10000, 100000, 1000000",
        );
    }
}
