//! Assertions in promptfoo's vocabulary: names, the `not-` prefix, weights, thresholds, metrics,
//! and the shape of `value` each type needs. Evaluation lives beside this in a later module;
//! here a tests file is validated so a typo is caught before anything runs.

use serde::Serialize;
use serde_json::Value;

use crate::diagnostic::Position;
use crate::yaml::{Node, NodeValue, YamlError};

macro_rules! assertion_kinds {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// Every assertion type promptdeck knows, by its promptfoo name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum AssertionKind { $($variant),+ }

        impl AssertionKind {
            pub const ALL: &[AssertionKind] = &[$(AssertionKind::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $(AssertionKind::$variant => $name),+ }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(AssertionKind::$variant),)+ _ => None }
            }
        }
    };
}

assertion_kinds! {
    Equals => "equals",
    Contains => "contains",
    Icontains => "icontains",
    ContainsAny => "contains-any",
    ContainsAll => "contains-all",
    IcontainsAny => "icontains-any",
    IcontainsAll => "icontains-all",
    StartsWith => "starts-with",
    Regex => "regex",
    IsJson => "is-json",
    ContainsJson => "contains-json",
    IsValidJsonSchema => "is-valid-json-schema",
    Levenshtein => "levenshtein",
    RougeN => "rouge-n",
    Similar => "similar",
    WordCount => "word-count",
    Latency => "latency",
    Cost => "cost",
    LlmRubric => "llm-rubric",
    ModelGradedClosedqa => "model-graded-closedqa",
    VotesAgree => "votes-agree",
}

/// promptfoo types that run arbitrary code or services; refused with a reason rather than as typos.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "javascript",
        "promptdeck does not execute JavaScript from tests files",
    ),
    (
        "python",
        "promptdeck does not execute Python from tests files",
    ),
    (
        "webhook",
        "promptdeck does not call webhooks from tests files",
    ),
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assertion {
    pub kind: AssertionKind,
    pub negated: bool,
    pub value: Option<Value>,
    pub threshold: Option<f64>,
    pub weight: f64,
    pub metric: Option<String>,
    /// The judge backend for model-graded assertions.
    pub provider: Option<String>,
    #[serde(skip)]
    pub position: Position,
}

impl Assertion {
    /// The type as written, with its `not-` prefix.
    pub fn type_name(&self) -> String {
        if self.negated {
            format!("not-{}", self.kind.name())
        } else {
            self.kind.name().to_owned()
        }
    }
}

/// Parses and validates one assertion mapping. Warnings (unknown keys kept by promptfoo for its
/// own use) are pushed to `warnings`.
pub fn parse(node: &Node, warnings: &mut Vec<YamlError>) -> Result<Assertion, YamlError> {
    let entries = node.as_map().ok_or_else(|| {
        YamlError::new(
            node.position,
            format!(
                "an assertion must be a mapping with a `type`, found {}",
                node.kind_name()
            ),
        )
    })?;
    let type_node = node
        .get("type")
        .ok_or_else(|| YamlError::new(node.position, "assertion has no `type`"))?;
    let type_name = type_node
        .as_str()
        .ok_or_else(|| YamlError::new(type_node.position, "assertion `type` must be a string"))?;
    let (negated, base) = match type_name.strip_prefix("not-") {
        Some(base) => (true, base),
        None => (false, type_name),
    };
    let kind = AssertionKind::from_name(base)
        .ok_or_else(|| unknown_type(type_name, base, type_node.position))?;

    let mut assertion = Assertion {
        kind,
        negated,
        value: None,
        threshold: None,
        weight: 1.0,
        metric: None,
        provider: None,
        position: type_node.position,
    };
    for (key, value) in entries {
        match key.name.as_str() {
            "type" => {}
            "value" => assertion.value = Some(value.to_json()),
            "threshold" => assertion.threshold = Some(number(value, "threshold")?),
            "weight" => {
                let weight = number(value, "weight")?;
                if weight < 0.0 || !weight.is_finite() {
                    return Err(YamlError::new(
                        value.position,
                        format!("`weight` must be zero or more, got {weight}"),
                    ));
                }
                assertion.weight = weight;
            }
            "metric" => assertion.metric = Some(value.deserialize()?),
            "provider" => assertion.provider = Some(value.deserialize()?),
            // promptfoo keys with no effect on promptdeck's built-in evaluation.
            "transform" | "config" | "rubricPrompt" => warnings.push(YamlError::new(
                key.position,
                format!(
                    "assertion key `{}` is not supported by promptdeck and is ignored",
                    key.name
                ),
            )),
            other => {
                return Err(YamlError::new(
                    key.position,
                    format!(
                        "unknown assertion key `{other}` (known: type, value, threshold, weight, metric, provider)"
                    ),
                ));
            }
        }
    }
    validate_value(&assertion, node)?;
    Ok(assertion)
}

fn unknown_type(written: &str, base: &str, at: Position) -> YamlError {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(name, _)| *name == base) {
        return YamlError::new(at, format!("unsupported assertion type `{written}`: {why}"));
    }
    let suggestion = AssertionKind::ALL
        .iter()
        .map(|k| k.name())
        .min_by_key(|name| edit_distance(base, name))
        .filter(|name| edit_distance(base, name) <= 3)
        .map(|name| format!("; did you mean `{name}`?"))
        .unwrap_or_default();
    YamlError::new(
        at,
        format!("unknown assertion type `{written}`{suggestion}"),
    )
}

/// Plain Levenshtein distance, small inputs only (type names).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn number(node: &Node, what: &str) -> Result<f64, YamlError> {
    match node.value {
        NodeValue::Int(i) => Ok(i as f64),
        NodeValue::Float(f) => Ok(f),
        _ => Err(YamlError::new(
            node.position,
            format!("`{what}` must be a number, found {}", node.kind_name()),
        )),
    }
}

/// Checks that `value` and `threshold` have the shape the assertion type needs.
fn validate_value(a: &Assertion, node: &Node) -> Result<(), YamlError> {
    use AssertionKind::*;
    let value_at = node.get("value").map_or(a.position, |v| v.position);
    let threshold_at = node.get("threshold").map_or(a.position, |v| v.position);
    let fail = |at: Position, message: String| Err(YamlError::new(at, message));
    let name = a.kind.name();
    let value = a.value.as_ref();
    let scalar_text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    match a.kind {
        Equals => {
            if value.is_none() {
                return fail(a.position, format!("`{name}` needs a `value`"));
            }
        }
        Contains | Icontains | StartsWith | LlmRubric | ModelGradedClosedqa | Levenshtein
        | RougeN | Similar => match scalar_text(value) {
            Some(text) if !text.is_empty() => {}
            Some(_) => return fail(value_at, format!("`{name}` needs a non-empty `value`")),
            None => return fail(value_at, format!("`{name}` needs a text `value`")),
        },
        ContainsAny | ContainsAll | IcontainsAny | IcontainsAll => match value {
            Some(Value::Array(items))
                if !items.is_empty() && items.iter().all(|i| scalar_text(Some(i)).is_some()) => {}
            // promptfoo also accepts a comma-separated string.
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return fail(
                    value_at,
                    format!("`{name}` needs a `value` that is a non-empty list of strings"),
                );
            }
        },
        Regex => match value {
            Some(Value::String(pattern)) => {
                if let Err(e) = super::regex_cache::compile(pattern) {
                    // regex draws the pattern with a caret over several lines; the last line
                    // holds the reason.
                    let text = e.to_string();
                    let reason = text.lines().last().unwrap_or_default();
                    let reason = reason.trim().trim_start_matches("error: ");
                    return fail(value_at, format!("invalid regex `{pattern}`: {reason}"));
                }
            }
            _ => {
                return fail(
                    value_at,
                    "`regex` needs a pattern as its `value`".to_owned(),
                );
            }
        },
        IsJson | ContainsJson | IsValidJsonSchema => match value {
            None if a.kind != IsValidJsonSchema => {}
            Some(Value::Object(_)) | Some(Value::Bool(_)) => {}
            // A schema written as a JSON string.
            Some(Value::String(s))
                if serde_json::from_str::<Value>(s).is_ok_and(|v| v.is_object()) => {}
            _ => {
                return fail(
                    value_at,
                    format!("`{name}` needs a JSON schema object as its `value`"),
                );
            }
        },
        WordCount => match value {
            Some(Value::Number(n)) if n.as_u64().is_some() => {}
            Some(Value::Object(range))
                if !range.is_empty()
                    && range
                        .iter()
                        .all(|(k, v)| (k == "min" || k == "max") && v.as_u64().is_some()) => {}
            _ => {
                return fail(
                    value_at,
                    "`word-count` needs a whole number or `{min: N, max: N}` as its `value`"
                        .to_owned(),
                );
            }
        },
        Latency | Cost | VotesAgree => {}
    }
    // As in promptfoo, latency and cost without a threshold only record a metric.
    let needs_threshold = matches!(a.kind, Latency | Cost) && a.metric.is_none();
    match a.threshold {
        None if needs_threshold => fail(
            a.position,
            format!("`{name}` needs a `threshold` (or a `metric` to only record the value)"),
        ),
        Some(t) if t < 0.0 || !t.is_finite() => fail(
            threshold_at,
            format!("`threshold` must be zero or more, got {t}"),
        ),
        Some(t) if matches!(a.kind, RougeN | Similar | VotesAgree) && t > 1.0 => fail(
            threshold_at,
            format!("`{name}` threshold is a score between 0 and 1, got {t}"),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn parse_str(text: &str) -> Result<Assertion, YamlError> {
        parse(&yaml::parse(text).unwrap(), &mut Vec::new())
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for kind in AssertionKind::ALL {
            assert_eq!(AssertionKind::from_name(kind.name()), Some(*kind));
        }
    }

    #[test]
    fn negation_weight_metric() {
        let a = parse_str("type: not-icontains\nvalue: sorry\nweight: 2\nmetric: tone\n").unwrap();
        assert!(a.negated);
        assert_eq!(a.kind, AssertionKind::Icontains);
        assert_eq!(a.weight, 2.0);
        assert_eq!(a.type_name(), "not-icontains");
    }

    #[test]
    fn unknown_types_suggest_the_closest() {
        let err = parse_str("type: contians\nvalue: x\n").unwrap_err();
        assert_eq!(
            err.message,
            "unknown assertion type `contians`; did you mean `contains`?"
        );
        assert_eq!(err.position, Position::new(1, 7));
        let err = parse_str("type: javascript\nvalue: output.length > 3\n").unwrap_err();
        assert!(err.message.contains("does not execute JavaScript"));
    }

    #[test]
    fn values_are_checked_per_type() {
        assert!(
            parse_str("type: regex\nvalue: '(unclosed'\n")
                .unwrap_err()
                .message
                .starts_with("invalid regex")
        );
        assert!(parse_str("type: contains-any\nvalue: []\n").is_err());
        assert!(parse_str("type: contains-any\nvalue: 'a, b'\n").is_ok());
        assert!(parse_str("type: word-count\nvalue: {min: 3, max: 9}\n").is_ok());
        assert!(parse_str("type: word-count\nvalue: {least: 3}\n").is_err());
        assert_eq!(
            parse_str("type: latency\n").unwrap_err().message,
            "`latency` needs a `threshold` (or a `metric` to only record the value)"
        );
        assert!(parse_str("type: cost\nmetric: spend\n").is_ok());
        assert!(parse_str("type: similar\nvalue: x\nthreshold: 1.5\n").is_err());
        assert!(parse_str("type: is-json\n").is_ok());
        assert!(parse_str("type: is-valid-json-schema\n").is_err());
        assert!(
            parse_str("type: contains\nvalue: x\nweigth: 2\n")
                .unwrap_err()
                .message
                .starts_with("unknown assertion key `weigth`")
        );
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
