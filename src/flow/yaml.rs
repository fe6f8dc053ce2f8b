//! A YAML document as a tree of nodes that remember where they were written, so
//! that every later check can point at `line:col`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// Where a node was written: 1-based line and column (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A scalar, list or mapping with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in written order; duplicates are kept so checks can name them.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar as text, as an operator would read it (`1` and `"1"` alike).
    pub fn as_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's kind for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "text",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Nesting deeper than this is refused: flows are shallow, and deep input is an
/// attack on the stack.
const MAX_DEPTH: usize = 64;

/// Parses one YAML document. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Node {
            pos: Pos { line: 1, column: 1 },
            value: Value::Null,
        });
    }
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    let parsed: Result<Spanned<RawValue>, _> = serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(s) => {
            let node = into_node(s);
            if depth(&node) > MAX_DEPTH {
                return Err(SyntaxError {
                    pos: node.pos,
                    message: format!("nesting deeper than {MAX_DEPTH} levels"),
                });
            }
            Ok(node)
        }
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line() as usize,
                    column: l.column() as usize,
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            let message = e.without_snippet().to_string();
            let message = strip_location(&message);
            Err(SyntaxError { pos, message })
        }
    }
}

/// The library's message ends with its own ` at line X column Y`; the diagnostic
/// already says where, so it is cut.
fn strip_location(message: &str) -> String {
    let first = message.lines().next().unwrap_or("invalid YAML").trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn depth(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 1,
    }
}

fn into_node(s: Spanned<RawValue>) -> Node {
    let pos = Pos {
        line: s.referenced.line() as usize,
        column: s.referenced.column() as usize,
    };
    let value = match s.value {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Int(i) => Value::Int(i),
        RawValue::Float(f) => Value::Float(f),
        RawValue::Str(s) => Value::Str(s),
        RawValue::Seq(items) => Value::Seq(items.into_iter().map(into_node).collect()),
        RawValue::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (into_node(k), into_node(v)))
                .collect(),
        ),
    };
    Node { pos, value }
}

/// What the deserializer hands us before positions are unwrapped.
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<RawValue>, Spanned<RawValue>)>),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(RawValue::Int(i)),
            Err(_) => Ok(RawValue::Str(v.to_string())),
        }
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(RawValue::Int(i)),
            Err(_) => Ok(RawValue::Str(v.to_string())),
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(RawValue::Int(i)),
            Err(_) => Ok(RawValue::Str(v.to_string())),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<RawValue>, Spanned<RawValue>>()? {
            entries.push((k, v));
        }
        Ok(RawValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let n = parse("a:\n  - x\n  - b: 3\n").expect("valid");
        let m = n.as_map().expect("map");
        assert_eq!(m[0].0.pos, Pos { line: 1, column: 1 });
        let items = m[0].1.as_seq().expect("seq");
        assert_eq!(items[0].pos, Pos { line: 2, column: 5 });
        let inner = items[1].as_map().expect("map");
        assert_eq!(inner[0].0.pos, Pos { line: 3, column: 5 });
        assert_eq!(inner[0].1.pos, Pos { line: 3, column: 8 });
        assert_eq!(inner[0].1.value, Value::Int(3));
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_checker() {
        let n = parse("\"1\": a\n1: b\n").expect("valid");
        let m = n.as_map().expect("map");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].0.pos, Pos { line: 2, column: 1 });
        assert_eq!(m[1].0.as_text().as_deref(), Some("1"));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: c\n").expect_err("invalid");
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = parse("a: b\n  c: d\n").expect_err("invalid");
        assert_eq!(e.pos.line, 2, "{e:?}");
    }

    #[test]
    fn empty_is_null() {
        assert_eq!(parse("  \n").expect("ok").value, Value::Null);
    }
}
