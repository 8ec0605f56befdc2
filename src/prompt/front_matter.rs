//! The YAML front matter of a `.prompty` file: what it may contain and how it is validated.
//!
//! Prompty v1 files (`model.api`, `model.configuration`, `model.parameters`, `inputs`, `sample`)
//! load unchanged; promptdeck adds `model.backend`, `template: none` and `technique`. Keys that
//! promptdeck does not know are kept and reported as warnings, because Prompty files in the wild
//! carry extra keys (`outputs`, `version`, tool definitions) that must not make them unusable.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diagnostic::Position;
use crate::yaml::{Node, NodeValue, YamlError};

/// Everything the front matter says, validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FrontMatter {
    pub name: Option<String>,
    pub description: Option<String>,
    pub authors: Vec<String>,
    pub tags: Vec<String>,
    pub version: Option<String>,
    pub model: ModelSpec,
    /// Declared inputs in file order.
    pub inputs: Vec<InputSpec>,
    /// Default variables for rendering without a test case.
    pub sample: SampleSpec,
    pub template: TemplateFormat,
    pub technique: Option<super::technique::Technique>,
    pub technique_position: Option<Position>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelSpec {
    /// A backend name from promptdeck.toml.
    pub backend: Option<String>,
    pub backend_position: Option<Position>,
    /// Prompty's `api` (`chat` or `completion`); kept for compatibility.
    pub api: Option<String>,
    /// Prompty's connection settings, kept verbatim. `${env:VAR}` references are never resolved
    /// here, so secrets cannot leak into a rendered prompt or the store.
    pub configuration: Option<Value>,
    pub parameters: Parameters,
    /// Parameters promptdeck does not interpret (Prompty's `frequency_penalty`, say): kept and
    /// passed on to backends that understand them.
    pub extra_parameters: Map<String, Value>,
}

/// Sampling parameters that every promptdeck backend understands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f64>,
}

pub const PARAMETER_NAMES: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "seed",
    "stop",
    "repeat_penalty",
];

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Parameters {
    /// Range checks that serde cannot express; each problem names the parameter.
    fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut range =
            |name: &'static str, value: Option<f64>, lo: f64, hi: f64, lo_open: bool| {
                if let Some(v) = value {
                    let below = if lo_open { v <= lo } else { v < lo };
                    if below || v > hi || v.is_nan() {
                        let open = if lo_open { "(" } else { "[" };
                        problems.push((
                            name,
                            format!("`{name}` must be in {open}{lo}, {hi}], got {v}"),
                        ));
                    }
                }
            };
        range("temperature", self.temperature, 0.0, 2.0, false);
        range("top_p", self.top_p, 0.0, 1.0, true);
        range("min_p", self.min_p, 0.0, 1.0, false);
        range("repeat_penalty", self.repeat_penalty, 0.0, 10.0, true);
        if self.max_tokens == Some(0) {
            problems.push(("max_tokens", "`max_tokens` must be at least 1".to_owned()));
        }
        if self.stop.iter().any(String::is_empty) {
            problems.push(("stop", "stop sequences must not be empty".to_owned()));
        }
        problems
    }

    /// `other` wins where it sets a value: used for config defaults < front matter < CLI flags.
    pub fn overlay(&self, other: &Parameters) -> Parameters {
        Parameters {
            temperature: other.temperature.or(self.temperature),
            top_p: other.top_p.or(self.top_p),
            top_k: other.top_k.or(self.top_k),
            min_p: other.min_p.or(self.min_p),
            max_tokens: other.max_tokens.or(self.max_tokens),
            seed: other.seed.or(self.seed),
            stop: if other.stop.is_empty() {
                self.stop.clone()
            } else {
                other.stop.clone()
            },
            repeat_penalty: other.repeat_penalty.or(self.repeat_penalty),
        }
    }
}

/// The type a declared input expects; used to check case variables and to parse `--var` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Integer,
    Boolean,
    #[serde(alias = "list")]
    Array,
    #[serde(alias = "dict")]
    Object,
}

impl InputType {
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            InputType::String => value.is_string(),
            InputType::Number => value.is_number(),
            InputType::Integer => value.is_i64() || value.is_u64(),
            InputType::Boolean => value.is_boolean(),
            InputType::Array => value.is_array(),
            InputType::Object => value.is_object(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Integer => "integer",
            InputType::Boolean => "boolean",
            InputType::Array => "array",
            InputType::Object => "object",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSpec {
    pub name: String,
    pub kind: Option<InputType>,
    pub description: Option<String>,
    pub default: Option<Value>,
    pub position: Position,
}

/// `sample:` is either inline variables or, as Prompty allows, `${file:sample.json}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub enum SampleSpec {
    #[default]
    None,
    Inline(Map<String, Value>),
    File {
        path: String,
        position: Position,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateFormat {
    #[default]
    Jinja,
    /// The body is sent verbatim: for prompts full of braces (JSON, code).
    None,
}

/// A non-fatal observation about the front matter.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontMatterWarning {
    pub position: Position,
    pub message: String,
}

const KNOWN_KEYS: &[&str] = &[
    "name",
    "description",
    "authors",
    "tags",
    "version",
    "model",
    "inputs",
    "sample",
    "template",
    "technique",
];

/// Validates a parsed front-matter node. Errors stop at the first problem in each key but all
/// keys are examined, so one pass reports every broken key.
pub fn parse(node: &Node) -> Result<(FrontMatter, Vec<FrontMatterWarning>), Vec<YamlError>> {
    let mut fm = FrontMatter::default();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let entries = match &node.value {
        NodeValue::Map(entries) => entries.as_slice(),
        NodeValue::Null => &[],
        _ => {
            return Err(vec![YamlError::new(
                node.position,
                format!(
                    "front matter must be a mapping of keys to values, found {}",
                    node.kind_name()
                ),
            )]);
        }
    };
    for (key, value) in entries {
        let result = match key.name.as_str() {
            "name" => value.deserialize().map(|v| fm.name = Some(v)),
            "description" => value.deserialize().map(|v| fm.description = Some(v)),
            "version" => scalar_string(value).map(|v| fm.version = Some(v)),
            "authors" => string_list(value).map(|v| fm.authors = v),
            "tags" => string_list(value).map(|v| fm.tags = v),
            "model" => parse_model(value, &mut warnings).map(|v| fm.model = v),
            "inputs" => parse_inputs(value, &mut warnings).map(|v| fm.inputs = v),
            "sample" => parse_sample(value).map(|v| fm.sample = v),
            "template" => parse_template(value).map(|v| fm.template = v),
            // Prompty v1 keys that describe the prompt but change nothing about rendering.
            "outputs" | "$schema" => Ok(()),
            "technique" => value
                .deserialize()
                .and_then(|t: super::technique::Technique| {
                    t.validate()
                        .map_err(|m| YamlError::new(value.position, m))?;
                    fm.technique = Some(t);
                    fm.technique_position = Some(value.position);
                    Ok(())
                }),
            other => {
                warnings.push(FrontMatterWarning {
                    position: key.position,
                    message: format!(
                        "unknown front-matter key `{other}` (kept, but promptdeck does not use it; known keys: {})",
                        KNOWN_KEYS.join(", ")
                    ),
                });
                Ok(())
            }
        };
        if let Err(err) = result {
            errors.push(err);
        }
    }
    if errors.is_empty() {
        Ok((fm, warnings))
    } else {
        Err(errors)
    }
}

fn scalar_string(node: &Node) -> Result<String, YamlError> {
    match &node.value {
        NodeValue::String(s) => Ok(s.clone()),
        NodeValue::Int(i) => Ok(i.to_string()),
        NodeValue::Float(f) => Ok(f.to_string()),
        _ => Err(YamlError::new(
            node.position,
            format!("expected a string, found {}", node.kind_name()),
        )),
    }
}

/// Prompty writes `authors: [a, b]`; a single string is accepted too.
fn string_list(node: &Node) -> Result<Vec<String>, YamlError> {
    match &node.value {
        NodeValue::String(s) => Ok(vec![s.clone()]),
        NodeValue::Null => Ok(Vec::new()),
        NodeValue::Seq(items) => items.iter().map(scalar_string).collect(),
        _ => Err(YamlError::new(
            node.position,
            format!("expected a list of strings, found {}", node.kind_name()),
        )),
    }
}

fn parse_model(
    node: &Node,
    warnings: &mut Vec<FrontMatterWarning>,
) -> Result<ModelSpec, YamlError> {
    let entries = node.as_map().ok_or_else(|| {
        YamlError::new(
            node.position,
            format!("`model` must be a mapping, found {}", node.kind_name()),
        )
    })?;
    let mut model = ModelSpec::default();
    for (key, value) in entries {
        match key.name.as_str() {
            "backend" => {
                model.backend = Some(value.deserialize()?);
                model.backend_position = Some(value.position);
            }
            "api" => model.api = Some(value.deserialize()?),
            "configuration" => model.configuration = Some(value.to_json()),
            "parameters" => {
                let params = value.as_map().ok_or_else(|| {
                    YamlError::new(value.position, format!("`parameters` must be a mapping, found {}", value.kind_name()))
                })?;
                let mut known = Vec::new();
                for (pkey, pvalue) in params {
                    if PARAMETER_NAMES.contains(&pkey.name.as_str()) {
                        known.push((pkey.clone(), pvalue.clone()));
                    } else {
                        warnings.push(FrontMatterWarning {
                            position: pkey.position,
                            message: format!(
                                "model parameter `{}` is not one promptdeck maps for every backend (kept and passed to API backends as is)",
                                pkey.name
                            ),
                        });
                        model.extra_parameters.insert(pkey.name.clone(), pvalue.to_json());
                    }
                }
                let known_node = Node { value: NodeValue::Map(known), position: value.position };
                model.parameters = known_node.deserialize()?;
                if let Some((name, message)) = model.parameters.validate().into_iter().next() {
                    let at = known_node.get(name).map_or(value.position, |n| n.position);
                    return Err(YamlError::new(at, message));
                }
            }
            // Prompty v1 also allows `response: first|all`; it has no effect on a chat request.
            "response" => {}
            other => warnings.push(FrontMatterWarning {
                position: key.position,
                message: format!(
                    "unknown key `model.{other}` (known: backend, api, configuration, parameters, response)"
                ),
            }),
        }
    }
    Ok(model)
}

fn parse_inputs(
    node: &Node,
    warnings: &mut Vec<FrontMatterWarning>,
) -> Result<Vec<InputSpec>, YamlError> {
    let entries = match &node.value {
        NodeValue::Map(entries) => entries,
        NodeValue::Null => return Ok(Vec::new()),
        _ => {
            return Err(YamlError::new(
                node.position,
                format!(
                    "`inputs` must map input names to their type or description, found {}",
                    node.kind_name()
                ),
            ));
        }
    };
    let mut inputs = Vec::new();
    for (key, value) in entries {
        check_identifier(&key.name, key.position)?;
        let mut input = InputSpec {
            name: key.name.clone(),
            kind: None,
            description: None,
            default: None,
            position: key.position,
        };
        match &value.value {
            // Shorthand: `question: string`.
            NodeValue::String(_) => input.kind = Some(value.deserialize()?),
            NodeValue::Null => {}
            NodeValue::Map(fields) => {
                for (fkey, fvalue) in fields {
                    match fkey.name.as_str() {
                        "type" => input.kind = Some(fvalue.deserialize()?),
                        "description" => input.description = Some(fvalue.deserialize()?),
                        "default" => input.default = Some(fvalue.to_json()),
                        // Prompty v1 documents a per-input `sample`; it only documents intent.
                        "sample" | "required" | "is_required" => {}
                        other => warnings.push(FrontMatterWarning {
                            position: fkey.position,
                            message: format!(
                                "unknown key `{other}` in input `{}` (known: type, description, default, sample)",
                                key.name
                            ),
                        }),
                    }
                }
            }
            _ => {
                return Err(YamlError::new(
                    value.position,
                    format!(
                        "input `{}` must be a type name or a mapping, found {}",
                        key.name,
                        value.kind_name()
                    ),
                ));
            }
        }
        if let (Some(kind), Some(default)) = (input.kind, &input.default) {
            if !kind.accepts(default) {
                return Err(YamlError::new(
                    value.position,
                    format!(
                        "the default of input `{}` is not of its declared type {}",
                        key.name,
                        kind.name()
                    ),
                ));
            }
        }
        inputs.push(input);
    }
    Ok(inputs)
}

fn parse_sample(node: &Node) -> Result<SampleSpec, YamlError> {
    match &node.value {
        NodeValue::Map(_) => match node.to_json() {
            Value::Object(map) => Ok(SampleSpec::Inline(map)),
            _ => Ok(SampleSpec::None),
        },
        NodeValue::Null => Ok(SampleSpec::None),
        NodeValue::String(s) => {
            let path = s
                .trim()
                .strip_prefix("${file:")
                .and_then(|rest| rest.strip_suffix('}'))
                .ok_or_else(|| {
                    YamlError::new(
                        node.position,
                        "`sample` must be a mapping of variables or `${file:PATH}`",
                    )
                })?;
            Ok(SampleSpec::File {
                path: path.trim().to_owned(),
                position: node.position,
            })
        }
        _ => Err(YamlError::new(
            node.position,
            format!(
                "`sample` must be a mapping of variables, found {}",
                node.kind_name()
            ),
        )),
    }
}

fn parse_template(node: &Node) -> Result<TemplateFormat, YamlError> {
    // Prompty writes `template: jinja2` or `template: {format: jinja2, parser: prompty}`.
    let (format, at) = match &node.value {
        NodeValue::String(s) => (s.as_str(), node.position),
        NodeValue::Null => return Ok(TemplateFormat::None),
        // Prompty v1 names the engine `type`, later versions `format`.
        NodeValue::Map(_) => match node.get("format").or_else(|| node.get("type")) {
            Some(format) => (format.as_str().unwrap_or(""), format.position),
            None => return Ok(TemplateFormat::Jinja),
        },
        _ => {
            return Err(YamlError::new(
                node.position,
                "`template` must be `jinja` or `none`",
            ));
        }
    };
    match format.to_ascii_lowercase().as_str() {
        "jinja" | "jinja2" => Ok(TemplateFormat::Jinja),
        "none" | "raw" => Ok(TemplateFormat::None),
        other => Err(YamlError::new(
            at,
            format!(
                "unsupported template format `{other}` (promptdeck supports `jinja` and `none`)"
            ),
        )),
    }
}

pub(crate) fn check_identifier(name: &str, at: Position) -> Result<(), YamlError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(YamlError::new(
            at,
            format!(
                "`{name}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn parse_str(text: &str) -> Result<(FrontMatter, Vec<FrontMatterWarning>), Vec<YamlError>> {
        parse(&yaml::parse(text).unwrap())
    }

    #[test]
    fn parses_promptdeck_keys() {
        let (fm, warnings) = parse_str(
            "name: math\nauthors: [a, b]\nmodel:\n  backend: local\n  parameters:\n    temperature: 0.2\n    stop: \"\\n\\n\"\ninputs:\n  question: {type: string, description: q}\n  n: {type: integer, default: 3}\nsample:\n  question: hi\ntemplate: none\n",
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(fm.name.as_deref(), Some("math"));
        assert_eq!(fm.model.backend.as_deref(), Some("local"));
        assert_eq!(fm.model.parameters.temperature, Some(0.2));
        assert_eq!(fm.model.parameters.stop, vec!["\n\n".to_owned()]);
        assert_eq!(fm.inputs.len(), 2);
        assert_eq!(fm.inputs[1].default, Some(Value::from(3)));
        assert_eq!(fm.template, TemplateFormat::None);
    }

    #[test]
    fn unknown_keys_are_warnings_with_positions() {
        let (_, warnings) = parse_str(
            "name: x\nbase: other.prompty\nmodel:\n  parameters:\n    frequency_penalty: 0.5\n",
        )
        .unwrap();
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0].position, Position::new(2, 1));
        assert_eq!(warnings[1].position, Position::new(5, 5));
    }

    #[test]
    fn bad_parameters_are_located_errors() {
        let errors = parse_str("model:\n  parameters:\n    temperature: 7\n").unwrap_err();
        assert_eq!(errors[0].position, Position::new(3, 18));
        assert_eq!(errors[0].message, "`temperature` must be in [0, 2], got 7");

        let errors = parse_str("model:\n  parameters:\n    max_tokens: -1\n").unwrap_err();
        assert_eq!(errors[0].position, Position::new(3, 17));
    }

    #[test]
    fn prompty_template_forms() {
        assert_eq!(
            parse_str("template: jinja2\n").unwrap().0.template,
            TemplateFormat::Jinja
        );
        assert_eq!(
            parse_str("template:\n  format: jinja2\n  parser: prompty\n")
                .unwrap()
                .0
                .template,
            TemplateFormat::Jinja
        );
        let errors = parse_str("template: mustache\n").unwrap_err();
        assert!(
            errors[0]
                .message
                .contains("unsupported template format `mustache`")
        );
    }

    #[test]
    fn sample_file_reference() {
        let (fm, _) = parse_str("sample: ${file:sample.json}\n").unwrap();
        assert!(matches!(fm.sample, SampleSpec::File { ref path, .. } if path == "sample.json"));
    }

    #[test]
    fn every_broken_key_is_reported() {
        let errors = parse_str("name: [1]\ntemplate: mustache\nmodel: 3\n").unwrap_err();
        assert_eq!(errors.len(), 3);
    }
}
