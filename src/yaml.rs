//! YAML parsed into a tree that remembers where every node came from.
//!
//! serde-based YAML crates report the first error only and forget positions once a value parsed;
//! `check` must report every problem in a file at its line and column (an unknown assertion type
//! three cases down, a wrongly typed parameter). So YAML is parsed with yaml-rust2's event parser
//! into [`Node`]s that carry positions, typed parts are deserialized from nodes with
//! [`Node::deserialize`], and errors are mapped back to the node that caused them.
//!
//! Hostile input is bounded: nesting deeper than [`MAX_DEPTH`] and alias expansion beyond
//! [`MAX_NODES`] (the "billion laughs" YAML bomb) are errors, not a stack overflow or an OOM.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::Position;

pub const MAX_DEPTH: usize = 64;
pub const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are scalars rendered as strings, with their own position.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub position: Position,
}

/// A YAML problem at a position in the parsed text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub position: Position,
    pub message: String,
}

impl YamlError {
    pub fn new(position: Position, message: impl Into<String>) -> Self {
        YamlError {
            position,
            message: message.into(),
        }
    }
}

/// Parses a single YAML document. An empty document is `Null` at the start.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
    };
    builder.document()
}

fn position(marker: &Marker) -> Position {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Position::new(marker.line(), marker.col() + 1)
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        self.parser.next_token().map_err(|err| {
            let marker = err.marker();
            if err.info().contains("recursion limit") {
                return YamlError::new(
                    position(marker),
                    format!("YAML is nested more than {MAX_DEPTH} levels deep"),
                );
            }
            YamlError::new(position(marker), format!("invalid YAML: {}", err.info()))
        })
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        let mut root = None;
        loop {
            let (event, marker) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {
                }
                Event::StreamEnd => break,
                _ if root.is_some() => {
                    return Err(YamlError::new(
                        position(&marker),
                        "expected a single YAML document, found more than one",
                    ));
                }
                event => root = Some(self.node(event, marker, 0)?),
            }
        }
        Ok(root.unwrap_or(Node {
            value: NodeValue::Null,
            position: Position::START,
        }))
    }

    fn count(&mut self, at: Position, added: usize) -> Result<(), YamlError> {
        self.nodes += added;
        if self.nodes > MAX_NODES {
            return Err(YamlError::new(
                at,
                format!(
                    "YAML expands to more than {MAX_NODES} values (an alias bomb?); refusing to load it"
                ),
            ));
        }
        Ok(())
    }

    fn node(&mut self, event: Event, marker: Marker, depth: usize) -> Result<Node, YamlError> {
        let at = position(&marker);
        if depth > MAX_DEPTH {
            return Err(YamlError::new(
                at,
                format!("YAML is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.count(at, 1)?;
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && tag.is_none();
                (scalar(text, plain), anchor)
            }
            Event::Alias(id) => {
                let target = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError::new(at, "alias refers to an unknown anchor"))?;
                let size = count_nodes(&target);
                self.count(at, size)?;
                return Ok(Node {
                    value: target.value,
                    position: at,
                });
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, marker) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, marker, depth + 1)?);
                }
                (NodeValue::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Key, Node)> = Vec::new();
                loop {
                    let (event, marker) = self.next()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key_node = self.node(event, marker, depth + 1)?;
                    let key = match key_node.value {
                        NodeValue::String(s) => s,
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Float(f) => f.to_string(),
                        NodeValue::Null => "null".to_owned(),
                        NodeValue::Seq(_) | NodeValue::Map(_) => {
                            return Err(YamlError::new(
                                key_node.position,
                                "mapping keys must be plain scalars",
                            ));
                        }
                    };
                    if let Some((previous, _)) = entries.iter().find(|(k, _)| k.name == key) {
                        return Err(YamlError::new(
                            key_node.position,
                            format!(
                                "duplicate key `{key}` (first defined at line {})",
                                previous.position.line
                            ),
                        ));
                    }
                    let (event, marker) = self.next()?;
                    let value = self.node(event, marker, depth + 1)?;
                    entries.push((
                        Key {
                            name: key,
                            position: key_node.position,
                        },
                        value,
                    ));
                }
                (NodeValue::Map(entries), anchor)
            }
            other => {
                return Err(YamlError::new(
                    at,
                    format!("unexpected YAML event {other:?}"),
                ));
            }
        };
        let node = Node {
            value,
            position: at,
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        NodeValue::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeValue::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of plain scalars; quoted and tagged scalars stay strings.
fn scalar(text: String, plain: bool) -> NodeValue {
    if !plain {
        return NodeValue::String(text);
    }
    match yaml_rust2::Yaml::from_str(&text) {
        yaml_rust2::Yaml::Null => NodeValue::Null,
        yaml_rust2::Yaml::Boolean(b) => NodeValue::Bool(b),
        yaml_rust2::Yaml::Integer(i) => NodeValue::Int(i),
        yaml_rust2::Yaml::Real(r) => match r.parse::<f64>() {
            Ok(f) => NodeValue::Float(f),
            Err(_) => special_float(&r).map_or(NodeValue::String(text), NodeValue::Float),
        },
        _ => NodeValue::String(text),
    }
}

fn special_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        ".inf" | "+.inf" => Some(f64::INFINITY),
        "-.inf" => Some(f64::NEG_INFINITY),
        ".nan" => Some(f64::NAN),
        _ => None,
    }
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::String(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn key_position(&self, key: &str) -> Option<Position> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k.position)
    }

    /// Shifts every position by `lines` lines: used for YAML embedded in a larger file.
    pub fn offset_lines(&mut self, lines: usize) {
        self.position = self.position.offset_lines(lines);
        match &mut self.value {
            NodeValue::Seq(items) => items.iter_mut().for_each(|n| n.offset_lines(lines)),
            NodeValue::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.position = k.position.offset_lines(lines);
                v.offset_lines(lines);
            }),
            _ => {}
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            // JSON has no NaN or infinity; those become null rather than failing the document.
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Deserializes this node into `T`; an error points at the innermost node that caused it
    /// (for an unknown field: at that field's key).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, YamlError> {
        let json = self.to_json();
        serde_path_to_error::deserialize(json).map_err(|err| {
            let chain = self.locate(err.path());
            let message = err.inner().to_string();
            // An unknown field is best shown at its key, in the deepest mapping that has it.
            let key = unknown_field(&message)
                .and_then(|field| chain.iter().rev().find_map(|node| node.key_position(field)));
            let position =
                key.unwrap_or_else(|| chain.last().map_or(self.position, |node| node.position));
            YamlError::new(position, message)
        })
    }

    /// The nodes along `path`, from `self` to the deepest one that exists.
    fn locate(&self, path: &serde_path_to_error::Path) -> Vec<&Node> {
        use serde_path_to_error::Segment;
        let mut chain = vec![self];
        let mut node = self;
        for segment in path.iter() {
            let next = match segment {
                Segment::Seq { index } => node.as_seq().and_then(|items| items.get(*index)),
                Segment::Map { key } => node.get(key),
                Segment::Enum { .. } | Segment::Unknown => None,
            };
            match next {
                Some(next) => {
                    node = next;
                    chain.push(next);
                }
                None => break,
            }
        }
        chain
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_one_based_positions() {
        let node = parse("name: x\nmodel:\n  parameters:\n    temperature: 0.5\n").unwrap();
        let params = node.get("model").and_then(|m| m.get("parameters")).unwrap();
        assert_eq!(
            params.key_position("temperature"),
            Some(Position::new(4, 5))
        );
        assert_eq!(
            params.get("temperature").unwrap().position,
            Position::new(4, 18)
        );
        assert_eq!(
            params.get("temperature").unwrap().value,
            NodeValue::Float(0.5)
        );
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let node = parse("a: '7'\nb: 7\nc: yes\nd: true\n").unwrap();
        assert_eq!(node.get("a").unwrap().value, NodeValue::String("7".into()));
        assert_eq!(node.get("b").unwrap().value, NodeValue::Int(7));
        // YAML 1.2: `yes` is a string, not a boolean.
        assert_eq!(
            node.get("c").unwrap().value,
            NodeValue::String("yes".into())
        );
        assert_eq!(node.get("d").unwrap().value, NodeValue::Bool(true));
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{err:?}");
        assert_eq!(err.position.line, 2);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a` (first defined at line 1)");
        assert_eq!(err.position, Position::new(3, 1));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            yaml.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&yaml).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let yaml = "[".repeat(10_000) + &"]".repeat(10_000);
        let err = parse(&yaml).unwrap_err();
        assert!(err.message.contains("nested more than"), "{err:?}");
    }

    #[test]
    fn deserialize_errors_point_at_the_offending_node() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Params {
            temperature: Option<f64>,
            max_tokens: Option<u32>,
        }
        let node = parse("temperature: 0.2\nmax_tokens: lots\n").unwrap();
        let err = node.deserialize::<Params>().unwrap_err();
        assert_eq!(err.position, Position::new(2, 13));
        assert!(
            err.message.contains("invalid type: string \"lots\""),
            "{err:?}"
        );

        let node = parse("temperature: 0.2\ntemprature: 1\n").unwrap();
        let err = node.deserialize::<Params>().unwrap_err();
        assert_eq!(err.position, Position::new(2, 1));
        assert!(
            err.message.starts_with("unknown field `temprature`"),
            "{err:?}"
        );
    }
}
