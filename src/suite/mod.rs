//! Test suites: the `NAME.tests.yaml` file beside each prompt, in promptfoo's schema. PURE: files
//! referenced with `file://` are read through the prompt [`Workspace`].
//!
//! A tests file is either a list of cases or a map with `defaultTest` and `tests`. `defaultTest`
//! vars are defaults for every case, its assertions are added to every case, and its `threshold`
//! and `options` apply where a case sets none.

pub mod assertion;
pub mod evaluate;
pub mod regex_cache;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostic, Position};
use crate::prompt::{Workspace, join_relative};
use crate::yaml::{self, Node, NodeValue, YamlError};
pub use assertion::{Assertion, AssertionKind};

/// Variables whose value starts with this are loaded from a file.
pub const FILE_PREFIX: &str = "file://";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TestSuite {
    pub description: Option<String>,
    pub cases: Vec<TestCase>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestCase {
    /// 1-based position in the file.
    pub index: usize,
    pub description: Option<String>,
    pub vars: Map<String, Value>,
    pub assertions: Vec<Assertion>,
    pub options: Map<String, Value>,
    /// Weighted score a case needs to pass; `None` means every assertion must pass.
    pub threshold: Option<f64>,
    /// With `promptdeck test --repeat N`: how many of the N samples must pass for the case to
    /// pass (`min-pass`); `None` means all of them.
    pub min_pass: Option<u32>,
    pub metadata: Map<String, Value>,
    #[serde(skip)]
    pub position: Position,
}

impl TestCase {
    /// How a case is named in messages: its description in quotes, or `#N`.
    pub fn label(&self) -> String {
        match &self.description {
            Some(d) => format!("\"{d}\""),
            None => format!("#{}", self.index),
        }
    }

    /// The name `--case` matches: the description, or the index as text.
    pub fn name(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| format!("#{}", self.index))
    }
}

#[derive(Debug, Clone, Default)]
struct Defaults {
    vars: Map<String, Value>,
    assertions: Vec<Assertion>,
    options: Map<String, Value>,
    threshold: Option<f64>,
    min_pass: Option<u32>,
}

/// Where the tests file is: its path to show, and its path relative to the project root (for
/// resolving `file://` variables).
pub struct TestsFileLocation<'a> {
    pub display: &'a Path,
    pub project_relative: &'a str,
}

/// Parses a tests file. Returns the cases that are valid plus every diagnostic; a caller treats
/// any error diagnostic as a failed check.
pub fn parse_tests_file(
    text: &str,
    at: &TestsFileLocation<'_>,
    workspace: &dyn Workspace,
) -> (TestSuite, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let error = |e: YamlError| Diagnostic::error(at.display, e.position, e.message);
    if text.trim().is_empty() {
        return (
            TestSuite::default(),
            vec![Diagnostic::error(
                at.display,
                Position::START,
                "tests file is empty",
            )],
        );
    }
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => return (TestSuite::default(), vec![error(e)]),
    };
    let mut suite = TestSuite::default();
    let mut defaults = Defaults::default();
    let cases: &[Node] = match &root.value {
        NodeValue::Seq(items) => items,
        NodeValue::Map(entries) => {
            let mut cases: &[Node] = &[];
            let mut found_tests = false;
            for (key, value) in entries {
                match key.name.as_str() {
                    "tests" => match value.as_seq() {
                        Some(items) => {
                            cases = items;
                            found_tests = true;
                        }
                        None => diagnostics.push(error(YamlError::new(
                            value.position,
                            format!("`tests` must be a list of test cases, found {}", value.kind_name()),
                        ))),
                    },
                    "defaultTest" => match parse_defaults(value, at, workspace, &mut diagnostics) {
                        Ok(d) => defaults = d,
                        Err(e) => diagnostics.push(error(e)),
                    },
                    "description" => suite.description = value.as_str().map(str::to_owned),
                    // promptfooconfig.yaml keys: accepted so a whole config can serve as a tests
                    // file, but they configure promptfoo, not this suite.
                    "prompts" | "providers" | "scenarios" | "evaluateOptions" | "outputPath" | "sharing" | "env" => {
                        diagnostics.push(Diagnostic::warning(
                            at.display,
                            key.position,
                            format!("`{}` is a promptfoo config key; promptdeck ignores it here (see `promptdeck import-promptfoo`)", key.name),
                        ));
                    }
                    other => diagnostics.push(Diagnostic::error(
                        at.display,
                        key.position,
                        format!("unknown key `{other}` in tests file (expected `tests`, `defaultTest` or `description`)"),
                    )),
                }
            }
            if !found_tests && !diagnostics.iter().any(Diagnostic::is_error) {
                diagnostics.push(Diagnostic::error(
                    at.display,
                    Position::START,
                    "tests file has no `tests` list",
                ));
            }
            cases
        }
        _ => {
            let message = format!(
                "a tests file must be a list of cases or a mapping with `tests`, found {}",
                root.kind_name()
            );
            return (
                suite,
                vec![Diagnostic::error(at.display, root.position, message)],
            );
        }
    };

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in cases.iter().enumerate() {
        match parse_case(node, i + 1, &defaults, at, workspace, &mut diagnostics) {
            Ok(case) => {
                if let Some(description) = &case.description {
                    if let Some(first) = seen.insert(description.clone(), case.index) {
                        diagnostics.push(Diagnostic::warning(
                            at.display,
                            case.position,
                            format!("case {} has the same description as case #{first}; `--case` picks the first", case.label()),
                        ));
                    }
                }
                suite.cases.push(case);
            }
            Err(e) => diagnostics.push(error(e)),
        }
    }
    (suite, diagnostics)
}

fn parse_defaults(
    node: &Node,
    at: &TestsFileLocation<'_>,
    workspace: &dyn Workspace,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Defaults, YamlError> {
    let entries = node.as_map().ok_or_else(|| {
        YamlError::new(
            node.position,
            format!(
                "`defaultTest` must be a mapping, found {}",
                node.kind_name()
            ),
        )
    })?;
    let mut defaults = Defaults::default();
    for (key, value) in entries {
        match key.name.as_str() {
            "vars" => defaults.vars = parse_vars(value, at, workspace)?,
            "assert" => defaults.assertions = parse_assertions(value, at, diagnostics)?,
            "options" => defaults.options = object(value, "options")?,
            "threshold" => defaults.threshold = Some(threshold(value)?),
            "min-pass" => defaults.min_pass = Some(min_pass(value)?),
            "metadata" => {}
            other => {
                return Err(YamlError::new(
                    key.position,
                    format!(
                        "unknown key `{other}` in `defaultTest` (known: vars, assert, options, threshold, min-pass, metadata)"
                    ),
                ));
            }
        }
    }
    Ok(defaults)
}

fn parse_case(
    node: &Node,
    index: usize,
    defaults: &Defaults,
    at: &TestsFileLocation<'_>,
    workspace: &dyn Workspace,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<TestCase, YamlError> {
    let entries = node.as_map().ok_or_else(|| {
        YamlError::new(
            node.position,
            format!(
                "test case #{index} must be a mapping, found {}",
                node.kind_name()
            ),
        )
    })?;
    let mut case = TestCase {
        index,
        description: None,
        vars: defaults.vars.clone(),
        assertions: Vec::new(),
        options: defaults.options.clone(),
        threshold: defaults.threshold,
        min_pass: defaults.min_pass,
        metadata: Map::new(),
        position: node.position,
    };
    for (key, value) in entries {
        match key.name.as_str() {
            "description" => case.description = Some(value.deserialize()?),
            "vars" => case.vars.extend(parse_vars(value, at, workspace)?),
            "assert" => case.assertions = parse_assertions(value, at, diagnostics)?,
            "options" => case.options.extend(object(value, "options")?),
            "threshold" => case.threshold = Some(threshold(value)?),
            "min-pass" => case.min_pass = Some(min_pass(value)?),
            "metadata" => case.metadata = object(value, "metadata")?,
            "provider" | "providerOutput" => diagnostics.push(Diagnostic::warning(
                at.display,
                key.position,
                format!(
                    "`{}` on a test case is not supported; choose backends with `--backend`",
                    key.name
                ),
            )),
            other => {
                return Err(YamlError::new(
                    key.position,
                    format!(
                        "unknown key `{other}` in test case (known: description, vars, assert, options, threshold, min-pass, metadata)"
                    ),
                ));
            }
        }
    }
    case.assertions.extend(defaults.assertions.iter().cloned());
    Ok(case)
}

fn parse_assertions(
    node: &Node,
    at: &TestsFileLocation<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Vec<Assertion>, YamlError> {
    let items = node.as_seq().ok_or_else(|| {
        YamlError::new(
            node.position,
            format!(
                "`assert` must be a list of assertions, found {}",
                node.kind_name()
            ),
        )
    })?;
    let mut assertions = Vec::new();
    let mut warnings = Vec::new();
    for item in items {
        // Every broken assertion is reported, not only the first of a case.
        match assertion::parse(item, &mut warnings) {
            Ok(a) => assertions.push(a),
            Err(e) => diagnostics.push(Diagnostic::error(at.display, e.position, e.message)),
        }
    }
    diagnostics.extend(
        warnings
            .into_iter()
            .map(|w| Diagnostic::warning(at.display, w.position, w.message)),
    );
    Ok(assertions)
}

fn parse_vars(
    node: &Node,
    at: &TestsFileLocation<'_>,
    workspace: &dyn Workspace,
) -> Result<Map<String, Value>, YamlError> {
    let entries = node.as_map().ok_or_else(|| {
        YamlError::new(
            node.position,
            format!(
                "`vars` must map names to values, found {}",
                node.kind_name()
            ),
        )
    })?;
    let mut vars = Map::new();
    for (key, value) in entries {
        crate::prompt::front_matter::check_identifier(&key.name, key.position)?;
        let json = match value.as_str().and_then(|s| s.strip_prefix(FILE_PREFIX)) {
            Some(target) => Value::String(load_var_file(target, value.position, at, workspace)?),
            None => value.to_json(),
        };
        vars.insert(key.name.clone(), json);
    }
    Ok(vars)
}

fn load_var_file(
    target: &str,
    position: Position,
    at: &TestsFileLocation<'_>,
    workspace: &dyn Workspace,
) -> Result<String, YamlError> {
    let fail = |message: String| YamlError::new(position, message);
    let path = join_relative(at.project_relative, target)
        .map_err(|e| fail(format!("{FILE_PREFIX}{target}: {e}")))?;
    workspace
        .read_project_file(&path)
        .map_err(|e| fail(format!("cannot read `{FILE_PREFIX}{target}`: {e}")))?
        .ok_or_else(|| {
            fail(format!(
                "`{FILE_PREFIX}{target}` not found (paths are relative to the tests file)"
            ))
        })
}

fn object(node: &Node, what: &str) -> Result<Map<String, Value>, YamlError> {
    match node.to_json() {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(YamlError::new(
            node.position,
            format!("`{what}` must be a mapping, found {}", node.kind_name()),
        )),
    }
}

/// `min-pass`: a whole number of samples, at least 1 (checked against `--repeat` when a run is
/// planned, since the tests file does not know how many samples a run takes).
fn min_pass(node: &Node) -> Result<u32, YamlError> {
    match node.value {
        NodeValue::Int(i) if i >= 1 => u32::try_from(i)
            .map_err(|_| YamlError::new(node.position, format!("`min-pass` {i} is too large"))),
        NodeValue::Int(i) => Err(YamlError::new(
            node.position,
            format!("`min-pass` must be a whole number of samples, at least 1, found {i}"),
        )),
        _ => Err(YamlError::new(
            node.position,
            format!(
                "`min-pass` must be a whole number of samples, at least 1, found {}",
                node.kind_name()
            ),
        )),
    }
}

fn threshold(node: &Node) -> Result<f64, YamlError> {
    let value = match node.value {
        NodeValue::Int(i) => i as f64,
        NodeValue::Float(f) => f,
        _ => {
            return Err(YamlError::new(
                node.position,
                format!("`threshold` must be a number, found {}", node.kind_name()),
            ));
        }
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(YamlError::new(
            node.position,
            format!("a case `threshold` is a weighted score between 0 and 1, got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Files(BTreeMap<String, String>);
    impl Workspace for Files {
        fn read_library_file(&self, name: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(&format!("prompts/{name}")).cloned())
        }
        fn read_project_file(&self, path: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(path).cloned())
        }
        fn display_path(&self, name: &str) -> PathBuf {
            PathBuf::from("prompts").join(name)
        }
    }

    fn parse(text: &str) -> (TestSuite, Vec<String>) {
        let files = Files(
            [("prompts/cot/data/a.txt".to_owned(), "file text".to_owned())]
                .into_iter()
                .collect(),
        );
        let at = TestsFileLocation {
            display: Path::new("prompts/cot/math.tests.yaml"),
            project_relative: "prompts/cot/math.tests.yaml",
        };
        let (suite, diagnostics) = parse_tests_file(text, &at, &files);
        (suite, diagnostics.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn list_form() {
        let (suite, diagnostics) = parse(
            "- description: a\n  vars: {q: one}\n  assert:\n    - type: contains\n      value: '1'\n- vars: {q: two}\n",
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(suite.cases.len(), 2);
        assert_eq!(suite.cases[0].label(), "\"a\"");
        assert_eq!(suite.cases[1].label(), "#2");
        assert_eq!(suite.cases[1].vars["q"], "two");
    }

    #[test]
    fn default_test_merges() {
        let (suite, diagnostics) = parse(
            "defaultTest:\n  vars: {tone: formal, q: default}\n  assert:\n    - type: not-icontains\n      value: sorry\n  threshold: 0.5\ntests:\n  - vars: {q: mine}\n    assert:\n      - type: contains\n        value: x\n  - description: b\n    threshold: 1\n",
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let first = &suite.cases[0];
        assert_eq!(first.vars["tone"], "formal");
        assert_eq!(first.vars["q"], "mine");
        assert_eq!(
            first
                .assertions
                .iter()
                .map(Assertion::type_name)
                .collect::<Vec<_>>(),
            ["contains", "not-icontains"]
        );
        assert_eq!(first.threshold, Some(0.5));
        assert_eq!(suite.cases[1].threshold, Some(1.0));
        assert_eq!(suite.cases[1].vars["q"], "default");
    }

    #[test]
    fn min_pass_from_default_test_and_cases() {
        let (suite, diagnostics) = parse(
            "defaultTest:\n  min-pass: 2\ntests:\n  - vars: {q: a}\n  - vars: {q: b}\n    min-pass: 3\n",
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(suite.cases[0].min_pass, Some(2));
        assert_eq!(suite.cases[1].min_pass, Some(3));
        assert_eq!(
            parse("- vars: {q: a}\n  min-pass: 0\n").1,
            [
                "prompts/cot/math.tests.yaml:2:13: error: `min-pass` must be a whole number of samples, at least 1, found 0"
            ]
        );
    }

    #[test]
    fn file_vars_load_relative_to_the_tests_file() {
        let (suite, diagnostics) = parse("- vars: {doc: 'file://data/a.txt'}\n");
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(suite.cases[0].vars["doc"], "file text");
        let (_, diagnostics) = parse("- vars: {doc: 'file://../../../etc/passwd'}\n");
        assert_eq!(
            diagnostics,
            [
                "prompts/cot/math.tests.yaml:1:15: error: file://../../../etc/passwd: `../../../etc/passwd` leads outside the prompts folder (`..` is not allowed)"
            ]
        );
    }

    #[test]
    fn every_bad_assertion_is_reported() {
        let (suite, diagnostics) = parse(
            "- description: one\n  assert:\n    - type: contians\n      value: x\n- description: two\n  assert:\n    - type: regex\n      value: '(('\n    - type: equal\n      value: y\n",
        );
        assert_eq!(suite.cases.len(), 2);
        assert_eq!(diagnostics.len(), 3, "{diagnostics:?}");
        assert_eq!(
            diagnostics[0],
            "prompts/cot/math.tests.yaml:3:13: error: unknown assertion type `contians`; did you mean `contains`?"
        );
        assert_eq!(
            diagnostics[2],
            "prompts/cot/math.tests.yaml:9:13: error: unknown assertion type `equal`; did you mean `equals`?"
        );
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            parse("").1,
            ["prompts/cot/math.tests.yaml:1:1: error: tests file is empty"]
        );
        assert_eq!(
            parse("just text\n").1,
            [
                "prompts/cot/math.tests.yaml:1:1: error: a tests file must be a list of cases or a mapping with `tests`, found a string"
            ]
        );
        assert_eq!(
            parse("defaultTest: {}\n").1,
            ["prompts/cot/math.tests.yaml:1:1: error: tests file has no `tests` list"]
        );
        assert_eq!(
            parse("- descripton: x\n").1,
            [
                "prompts/cot/math.tests.yaml:1:3: error: unknown key `descripton` in test case (known: description, vars, assert, options, threshold, min-pass, metadata)"
            ]
        );
        assert_eq!(
            parse("- vars: {a: 1}\n  threshold: 3\n").1,
            [
                "prompts/cot/math.tests.yaml:2:14: error: a case `threshold` is a weighted score between 0 and 1, got 3"
            ]
        );
    }
}
