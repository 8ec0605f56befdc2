//! Property-based fuzzing of every parser that reads user or network input: the front matter,
//! the role-marker split, the tests file, `promptdeck.toml`, the SSE parser, the GGUF metadata
//! reader, the store's export/import format and the promptfoo importer.
//!
//! cargo-fuzz needs a nightly compiler, so these are proptest properties instead. Each target
//! draws from two sources: a structure-aware generator (documents built from the format's own
//! keys, with values of every type, so that inputs get past the syntax into validation) and
//! byte-level mutation (bit flips, insertions, deletions, truncation, duplication and splices
//! of format tokens) of valid seeds and generated documents. Properties: no panic; every error
//! carries a location inside the input; round trips hold where there is one (SSE chunking,
//! role split, store export -> import -> export).
//!
//! CI runs few cases (`CASES` below, ~1 minute for the file in a debug build); run longer with
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz_parsers` (see docs/reliability.md).
//! A failure prints the minimal input; add it to the regression tests at the end of this file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};

use promptdeck::backend::sse::{SseEvent, SseParser};
use promptdeck::diagnostic::{Diagnostic, Severity};
use promptdeck::local::gguf::GgufModel;
use promptdeck::local::tokenizer::Tokenizer;
use promptdeck::project::Config;
use promptdeck::prompt::roles::{Message, split_messages};
use promptdeck::prompt::{Workspace, parse_prompt};
use promptdeck::store::{
    CaseResult, MemoryStore, Message as StoredMessage, RunMeta, RunStatus, Store, StoreError,
    TokenUsage, UnitFiles,
};
use promptdeck::suite::{TestsFileLocation, parse_tests_file};

/// Cases per property in a normal `cargo test`, unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failures are turned into named regression tests below, not into a persistence file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Byte-level mutation

/// Tokens spliced into inputs: the delimiters and keywords each format is built from.
const TOKENS: &[&str] = &[
    "---\n",
    "\n",
    "\r\n",
    "\r",
    ":",
    ": ",
    "- ",
    "  ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!binary ",
    "? ",
    "|\n",
    ">-\n",
    "\"",
    "'",
    "#",
    "{{",
    "}}",
    "{%",
    "%}",
    "system:\n",
    "user:\n",
    "assistant:\n",
    "data: ",
    "event: ",
    "\n\n",
    "[backends.x]\n",
    "kind = ",
    "=",
    "\u{FEFF}",
    "\u{0}",
    "\u{1F600}",
    "e\u{301}",
    "\u{2028}",
    "9999999999999999999999",
    "-1",
    "1e309",
    "NaN",
    ".inf",
    "~",
    "null",
    "true",
];

/// One mutation: (operation, position, byte, token index).
type Op = (u8, usize, u8, usize);

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (0u8..7, any::<usize>(), any::<u8>(), 0..TOKENS.len()),
        0..10,
    )
}

fn mutate(mut bytes: Vec<u8>, ops: &[Op]) -> Vec<u8> {
    for &(op, pos, byte, token) in ops {
        let n = bytes.len();
        let at = pos % (n + 1);
        match op {
            0 => bytes.insert(at, byte),
            1 if at < n => {
                let end = (at + 1 + byte as usize % 8).min(n);
                bytes.drain(at..end);
            }
            2 if at < n => bytes[at] ^= 1 << (byte % 8),
            3 => {
                let t = TOKENS[token].as_bytes();
                bytes.splice(at..at, t.iter().copied());
            }
            4 => bytes.truncate(at),
            5 if at < n => {
                let end = (at + 1 + byte as usize % 32).min(n);
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            6 if at < n => bytes[at] = byte,
            _ => {}
        }
    }
    bytes
}

fn mutated_text(seed: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (seed, ops()).prop_map(|(s, ops)| {
        // The parsers take `&str`: `user_file::read_text` refuses non-UTF-8 before them.
        String::from_utf8_lossy(&mutate(s.into_bytes(), &ops)).into_owned()
    })
}

// ---------------------------------------------------------------------------------------------
// Structure-aware values

/// Scalars that YAML and TOML read as something other than they look.
const TRICKY: &[&str] = &[
    "yes",
    "no",
    "on",
    "~",
    "null",
    "0x1F",
    "0o17",
    "1e3",
    ".nan",
    "-.inf",
    "1_000",
    "2026-11-28",
    "12:30:00",
    "@x",
    "`x`",
    "%x",
    "!x",
    "*x",
    "&x",
    "|",
    ">",
    "''",
    "\"\"",
    "-",
    "?",
    ":",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            64,
            4096,
            i64::MAX,
            u32::MAX as i64 + 1
        ])
        .prop_map(|i| json!(i)),
        prop::sample::select(vec![0.0f64, 0.5, 1.0, 2.0, -0.1, 1e300, f64::MIN_POSITIVE])
            .prop_map(|f| json!(f)),
        "[a-z_]{0,12}".prop_map(Value::String),
        prop::sample::select(TRICKY).prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
    ]
}

fn value_with_keys(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(keys), inner), 0..6).prop_map(|kvs| {
                Value::Object(kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A document: a map from the format's top-level keys to values whose inner keys are also the
/// format's own.
fn document(
    top: &'static [&'static str],
    inner: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(top), value_with_keys(inner)), 0..8)
        .prop_map(|kvs| Value::Object(kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// Block-style YAML, with strings sometimes left plain so that YAML's own typing applies.
fn to_yaml(value: &Value, plain_strings: bool) -> String {
    fn scalar(v: &Value, plain: bool) -> String {
        match v {
            Value::String(s) if plain && !s.is_empty() && !s.contains(['\n', ':', '#']) => {
                s.clone()
            }
            other => other.to_string(),
        }
    }
    fn emit(v: &Value, indent: usize, plain: bool, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    match v {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            emit(v, indent + 2, plain, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            emit(v, indent + 2, plain, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v, plain))),
                    }
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for item in items {
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            emit(item, indent + 2, plain, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            emit(item, indent + 2, plain, out);
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", scalar(item, plain))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other, plain))),
        }
    }
    let mut out = String::new();
    emit(value, 0, plain_strings, &mut out);
    out
}

/// A document as YAML: block style, or flow style (JSON is YAML).
fn yaml_text(doc: impl Strategy<Value = Value>) -> impl Strategy<Value = String> {
    (doc, 0u8..3).prop_map(|(v, style)| match style {
        0 => to_yaml(&v, false),
        1 => to_yaml(&v, true),
        _ => v.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Properties shared by the text parsers

/// Lines as YAML counts them: `\r\n`, `\n` and a lone `\r` each end a line (found by
/// `promptfoo_import_never_panics`: an old-Mac `\r` line break is a line to the YAML parser).
fn line_count(text: &str) -> usize {
    text.replace("\r\n", "\n").split(['\n', '\r']).count()
}

/// A diagnostic points into the file: line and column from 1, the line one that exists (or the
/// line just past the end, where "unexpected end of file" is reported).
fn assert_located(d: &Diagnostic, path: &Path, text: &str) -> Result<(), TestCaseError> {
    let lines = line_count(text);
    prop_assert_eq!(&d.path, path, "diagnostic for another file: {}", d);
    prop_assert!(
        d.position.line >= 1 && d.position.col >= 1,
        "no position: {}",
        d
    );
    prop_assert!(
        d.position.line <= lines + 1,
        "line {} past the end ({} lines): {}",
        d.position.line,
        lines,
        d
    );
    prop_assert!(!d.message.trim().is_empty(), "empty message: {:?}", d);
    Ok(())
}

/// A library without files: includes and `file://` references find nothing.
struct NoFiles;

impl Workspace for NoFiles {
    fn read_library_file(&self, _name: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    fn read_project_file(&self, _path: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    fn display_path(&self, name: &str) -> PathBuf {
        PathBuf::from("prompts").join(name)
    }
}

// ---------------------------------------------------------------------------------------------
// Front matter (prompt files)

const FRONT_KEYS: &[&str] = &[
    "name",
    "description",
    "version",
    "authors",
    "tags",
    "model",
    "inputs",
    "outputs",
    "sample",
    "template",
    "technique",
    "parameters",
    "unknown",
];
const FRONT_INNER: &[&str] = &[
    "backend",
    "parameters",
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "seed",
    "type",
    "default",
    "description",
    "kind",
    "samples",
    "extract",
    "generator",
    "tools",
    "max_turns",
    "steps",
    "format",
    "api",
    "configuration",
    "question",
    "x",
];

const PROMPT_SEEDS: &[&str] = &[
    "---\nname: math\nmodel:\n  backend: local\n  parameters:\n    temperature: 0.2\n    max_tokens: 64\ninputs:\n  question: {type: string, default: two}\nsample:\n  question: one plus one\n---\nsystem:\nYou are a tutor.\nuser:\n{{ question }}\n",
    "---\nname: sc\ntechnique:\n  kind: self-consistency\n  samples: 5\n  extract: last-number\n---\nuser:\n{{ q }}\n",
    "user:\nno front matter\n",
    "---\n---\nbody\n",
];

fn prompt_text() -> impl Strategy<Value = String> {
    let structured = (
        yaml_text(document(FRONT_KEYS, FRONT_INNER)),
        "[a-z {}\n:]{0,40}",
    )
        .prop_map(|(front, body)| format!("---\n{front}---\nuser:\n{body}\n"))
        .boxed();
    prop_oneof![
        structured.clone(),
        mutated_text(structured),
        mutated_text(prop::sample::select(PROMPT_SEEDS).prop_map(str::to_owned)),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn front_matter_never_panics_and_locates_errors(text in prompt_text()) {
        let path = PathBuf::from("prompts/fuzz.prompty");
        match parse_prompt("fuzz.prompty", path.clone(), &text) {
            Ok((prompt, warnings)) => {
                for w in &warnings {
                    assert_located(w, &path, &text)?;
                }
                prop_assert!(prompt.body_line >= 1);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert_eq!(e.severity, Severity::Error);
                    assert_located(e, &path, &text)?;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Role-marker split

fn rendered_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        prop::sample::select(vec![
            "system:",
            "user:",
            "assistant:",
            "USER:",
            "  # system :  ",
            "user: hi",
            "user:\r",
            "",
            " ",
            "\t",
            "\r",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        "[a-z :#]{0,20}",
    ];
    prop::collection::vec(line, 0..20).prop_map(|lines| lines.join("\n"))
}

fn render_messages(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| format!("{}:\n{}\n", m.role.as_str(), m.content))
        .collect()
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn role_split_round_trips(text in rendered_text()) {
        let (messages, dropped) = split_messages(&text);
        for m in &messages {
            prop_assert!(!m.content.is_empty(), "empty message kept: {:?}", m);
            prop_assert_eq!(m.content.trim(), m.content.as_str());
        }
        for d in &dropped {
            prop_assert!(d.index >= 1);
        }
        // Writing the messages back with their markers and splitting again gives them back:
        // no content line is itself a marker, so nothing is split twice or lost.
        let (again, dropped_again) = split_messages(&render_messages(&messages));
        prop_assert_eq!(&again, &messages);
        prop_assert!(dropped_again.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Tests files

const TESTS_TOP: &[&str] = &[
    "tests",
    "defaultTest",
    "description",
    "prompts",
    "providers",
    "unknown",
];
const TESTS_INNER: &[&str] = &[
    "description",
    "vars",
    "assert",
    "options",
    "threshold",
    "min-pass",
    "metadata",
    "type",
    "value",
    "weight",
    "provider",
    "metric",
    "transform",
    "question",
    "contains",
    "icontains",
    "equals",
    "regex",
    "is-json",
    "javascript",
    "llm-rubric",
    "similar",
    "not-contains",
    "starts-with",
    "latency",
    "cost",
];

const TESTS_SEEDS: &[&str] = &[
    "- description: apples\n  vars:\n    question: three plus four?\n  assert:\n    - type: contains\n      value: \"7\"\n    - type: regex\n      value: \"\\\\d+\"\n      weight: 2\n  threshold: 0.5\n",
    "defaultTest:\n  assert:\n    - type: icontains\n      value: ok\ntests:\n  - vars: {q: a}\n  - vars: {q: b}\n    min-pass: 2\n",
    "tests:\n  - vars:\n      doc: file://docs/a.txt\n    assert:\n      - type: is-json\n      - type: llm-rubric\n        value: polite\n",
];

fn tests_text() -> impl Strategy<Value = String> {
    let case = value_with_keys(TESTS_INNER);
    let cases = prop::collection::vec(case, 0..5).prop_map(Value::Array);
    let structured = prop_oneof![
        yaml_text(cases),
        yaml_text(document(TESTS_TOP, TESTS_INNER)),
    ]
    .boxed();
    prop_oneof![
        structured.clone(),
        mutated_text(structured),
        mutated_text(prop::sample::select(TESTS_SEEDS).prop_map(str::to_owned)),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn tests_file_never_panics_and_locates_errors(text in tests_text()) {
        let path = PathBuf::from("prompts/fuzz.tests.yaml");
        let at = TestsFileLocation {
            display: &path,
            project_relative: "prompts/fuzz.tests.yaml",
        };
        let (_suite, diagnostics) = parse_tests_file(&text, &at, &NoFiles);
        for d in &diagnostics {
            assert_located(d, &path, &text)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// promptdeck.toml

const TOML_TOP: &[&str] = &["defaults", "render", "backends", "tools", "keys", "unknown"];
const TOML_INNER: &[&str] = &[
    "backend",
    "parameters",
    "theme",
    "judge",
    "fuel",
    "kind",
    "model",
    "base_url",
    "api_key_env",
    "concurrency",
    "requests_per_minute",
    "timeout",
    "retries",
    "max_retry_time",
    "connect_timeout",
    "headers",
    "query",
    "prices",
    "input",
    "output",
    "threads",
    "exact",
    "sampling",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "seed",
    "stop",
    "repeat_penalty",
    "command",
    "description",
    "global",
    "editor",
    "ctrl-r",
    "openai",
    "local",
    "x",
];

const TOML_SEEDS: &[&str] = &[
    "[defaults]\nbackend = \"local\"\ntheme = \"dark\"\n[defaults.parameters]\ntemperature = 0.2\nmax_tokens = 256\nstop = [\"\\n\\n\"]\n\n[render]\nfuel = 100000\n\n[backends.gpt]\nkind = \"openai\"\nmodel = \"gpt-4o-mini\"\nconcurrency = 4\nrequests_per_minute = 60\ntimeout = 30.0\n[backends.gpt.prices]\ninput = 0.15\noutput = 0.6\n\n[backends.local]\nkind = \"local\"\nmodel = \"smollm2-135m\"\nthreads = 2\n[backends.local.sampling]\ntop_k = 40\n\n[tools.grep]\ncommand = [\"grep\", \"-n\"]\ndescription = \"search\"\n\n[keys.global]\n\"ctrl-r\" = \"run\"\n",
];

/// TOML has no null; nulls become empty strings so that every generated document is TOML.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Null => Value::String(String::new()),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn toml_text() -> impl Strategy<Value = String> {
    let structured = document(TOML_TOP, TOML_INNER)
        .prop_filter_map("not TOML", |doc| {
            let value: toml::Value = serde_json::from_value(without_nulls(doc)).ok()?;
            toml::to_string(&value).ok()
        })
        .boxed();
    prop_oneof![
        structured.clone(),
        mutated_text(structured),
        mutated_text(prop::sample::select(TOML_SEEDS).prop_map(str::to_owned)),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn config_never_panics_and_locates_errors(text in toml_text()) {
        let path = PathBuf::from("promptdeck.toml");
        if let Err(d) = Config::parse(&text, &path) {
            assert_located(&d, &path, &text)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SSE

/// One generated event: (event name, data lines, extra fields), and the line ending used.
fn sse_stream() -> impl Strategy<Value = (Vec<u8>, Vec<SseEvent>)> {
    let field = "[a-zA-Z0-9 {}\":,\u{e9}\u{1F600}]{0,20}";
    let event = (
        prop::option::of("[a-z_]{1,12}"),
        prop::collection::vec(field, 1..4),
        any::<bool>(),
        any::<bool>(),
    );
    (
        prop::collection::vec(event, 0..6),
        prop::sample::select(vec!["\n", "\r\n", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(events, eol, bom)| {
            let mut bytes = Vec::new();
            if bom {
                bytes.extend_from_slice(b"\xEF\xBB\xBF");
            }
            let mut expected = Vec::new();
            for (name, data, comment, id) in events {
                if comment {
                    bytes.extend_from_slice(format!(": keep-alive{eol}").as_bytes());
                }
                if let Some(name) = &name {
                    bytes.extend_from_slice(format!("event: {name}{eol}").as_bytes());
                }
                if id {
                    bytes.extend_from_slice(format!("id: 7{eol}retry: 100{eol}").as_bytes());
                }
                for line in &data {
                    bytes.extend_from_slice(format!("data: {line}{eol}").as_bytes());
                }
                bytes.extend_from_slice(eol.as_bytes());
                expected.push(SseEvent {
                    event: name.unwrap_or_default(),
                    data: data.join("\n"),
                });
            }
            (bytes, expected)
        })
}

fn feed_in_chunks(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts {
        out.extend(parser.feed(&bytes[start..cut]));
        start = cut;
    }
    out.extend(parser.feed(&bytes[start..]));
    out.extend(parser.finish());
    out
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Generated streams parse to the events they encode, however the network splits them.
    #[test]
    fn sse_parses_generated_streams_in_any_chunking(
        (bytes, expected) in sse_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(feed_in_chunks(&bytes, &[]), expected.clone());
        prop_assert_eq!(feed_in_chunks(&bytes, &cuts), expected);
    }

    /// Arbitrary and mutated bytes: no panic, and the chunking never changes the result.
    #[test]
    fn sse_chunking_never_changes_garbage(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            (sse_stream(), ops()).prop_map(|((b, _), ops)| mutate(b, &ops)),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = feed_in_chunks(&bytes, &[]);
        prop_assert_eq!(feed_in_chunks(&bytes, &cuts), whole);
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF

/// A metadata value as written: (GGUF type id, bytes).
fn gguf_string(s: &[u8], v1: bool) -> Vec<u8> {
    let mut out = if v1 {
        (s.len() as u32).to_le_bytes().to_vec()
    } else {
        (s.len() as u64).to_le_bytes().to_vec()
    };
    out.extend_from_slice(s);
    out
}

fn gguf_len(n: u64, v1: bool) -> Vec<u8> {
    if v1 {
        (n as u32).to_le_bytes().to_vec()
    } else {
        n.to_le_bytes().to_vec()
    }
}

#[derive(Debug, Clone)]
enum GValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(u8),
    Str(Vec<u8>),
    Array(u32, Vec<GValue>),
    /// A type id that does not exist.
    Bad(u32),
}

impl GValue {
    fn type_id(&self) -> u32 {
        match self {
            GValue::U32(_) => 4,
            GValue::I32(_) => 5,
            GValue::F32(_) => 6,
            GValue::Bool(_) => 7,
            GValue::Str(_) => 8,
            GValue::Array(..) => 9,
            GValue::U64(_) => 10,
            GValue::Bad(t) => *t,
        }
    }
    fn write(&self, v1: bool, out: &mut Vec<u8>) {
        match self {
            GValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            GValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            GValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            GValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            GValue::Bool(v) => out.push(*v),
            GValue::Str(s) => out.extend_from_slice(&gguf_string(s, v1)),
            GValue::Array(declared, items) => {
                let item_type = items.first().map_or(*declared, GValue::type_id);
                out.extend_from_slice(&item_type.to_le_bytes());
                out.extend_from_slice(&gguf_len(items.len() as u64, v1));
                for item in items {
                    item.write(v1, out);
                }
            }
            GValue::Bad(_) => out.extend_from_slice(&[1, 2, 3, 4]),
        }
    }
}

fn gvalue() -> impl Strategy<Value = GValue> {
    let leaf = prop_oneof![
        prop::sample::select(vec![0u32, 1, 2, 3, 32, 2048, u32::MAX]).prop_map(GValue::U32),
        any::<i32>().prop_map(GValue::I32),
        prop::sample::select(vec![0u64, 1, 8192, u64::MAX]).prop_map(GValue::U64),
        any::<f32>().prop_map(GValue::F32),
        (0u8..3).prop_map(GValue::Bool),
        prop::sample::select(vec![
            "llama",
            "qwen2",
            "gemma3",
            "gpt2",
            "",
            "<s>",
            "\u{0}\u{0}"
        ])
        .prop_map(|s| GValue::Str(s.as_bytes().to_vec())),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(GValue::Str),
        (13u32..40).prop_map(GValue::Bad),
    ];
    leaf.prop_recursive(3, 64, 16, |inner| {
        (0u32..14, prop::collection::vec(inner, 0..16))
            .prop_map(|(t, items)| GValue::Array(t, items))
    })
}

const GGUF_KEYS: &[&str] = &[
    "general.architecture",
    "general.name",
    "general.alignment",
    "llama.context_length",
    "qwen2.context_length",
    "gemma3.context_length",
    "llama.block_count",
    "llama.embedding_length",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
];

/// (name, dims, ggml type, offset)
type GTensor = (Vec<u8>, Vec<u64>, u32, u64);

fn gtensor() -> impl Strategy<Value = GTensor> {
    (
        prop::sample::select(vec!["token_embd.weight", "blk.0.attn_q.weight", "", "x"])
            .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(
            prop::sample::select(vec![0u64, 1, 2, 32, 4096, u32::MAX as u64, u64::MAX]),
            0..5,
        ),
        prop::sample::select(vec![0u32, 1, 2, 3, 8, 12, 14, 30, 31, 99]),
        prop::sample::select(vec![0u64, 32, 1 << 40, u64::MAX]),
    )
}

/// A small but well-formed llama file with a SentencePiece vocabulary, and the data it carries.
fn gguf_file(
    version: u32,
    metadata: &[(String, GValue)],
    tensors: &[GTensor],
    data_len: usize,
) -> Vec<u8> {
    let v1 = version == 1;
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&gguf_len(tensors.len() as u64, v1));
    out.extend_from_slice(&gguf_len(metadata.len() as u64, v1));
    for (key, value) in metadata {
        out.extend_from_slice(&gguf_string(key.as_bytes(), v1));
        out.extend_from_slice(&value.type_id().to_le_bytes());
        value.write(v1, &mut out);
    }
    for (name, dims, dtype, offset) in tensors {
        out.extend_from_slice(&gguf_string(name, v1));
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            if v1 {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            } else {
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        out.extend_from_slice(&dtype.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

fn valid_metadata() -> Vec<(String, GValue)> {
    let s = |t: &str| GValue::Str(t.as_bytes().to_vec());
    let tokens = ["<unk>", "<s>", "</s>", "\u{2581}a", "b", "<0x41>"];
    vec![
        ("general.architecture".into(), s("llama")),
        ("llama.context_length".into(), GValue::U32(2048)),
        ("tokenizer.ggml.model".into(), s("llama")),
        (
            "tokenizer.ggml.tokens".into(),
            GValue::Array(8, tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            GValue::Array(6, (0..6).map(|i| GValue::F32(-(i as f32))).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            GValue::Array(5, [2, 3, 3, 1, 1, 6].map(GValue::I32).to_vec()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), GValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), GValue::U32(2)),
        ("tokenizer.chat_template".into(), s("{{ messages }}")),
    ]
}

fn gguf_bytes() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        prop::sample::select(vec![1u32, 2, 3, 3, 3, 4, 0]),
        prop::collection::vec(
            (
                prop::sample::select(GGUF_KEYS).prop_map(str::to_owned),
                gvalue(),
            ),
            0..6,
        ),
        prop::collection::vec(gtensor(), 0..4),
        any::<bool>(),
        0usize..256,
    )
        .prop_map(|(version, extra, tensors, keep_valid, data_len)| {
            // Start from a valid vocabulary so that inputs reach the tokenizer, then override
            // or add keys with generated values.
            let mut metadata = if keep_valid {
                valid_metadata()
            } else {
                Vec::new()
            };
            metadata.extend(extra);
            gguf_file(version, &metadata, &tensors, data_len)
        })
        .boxed();
    prop_oneof![
        structured.clone(),
        (structured, ops()).prop_map(|(b, ops)| mutate(b, &ops)),
        Just(gguf_file(3, &valid_metadata(), &[], 0))
            .prop_flat_map(|b| { ops().prop_map(move |ops| mutate(b.clone(), &ops)) }),
    ]
}

/// Opens a GGUF image the way `promptdeck local` does: header, metadata, tokenizer, template.
fn open_gguf(bytes: &[u8]) -> Result<(), String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    file.write_all(bytes).map_err(|e| e.to_string())?;
    file.flush().map_err(|e| e.to_string())?;
    let model = GgufModel::open(file.path()).map_err(|e| e.to_string())?;
    let data = model.tokenizer_data().map_err(|e| e.to_string())?;
    let tokenizer = Tokenizer::from_gguf(&data).map_err(|e| e.to_string())?;
    // Text the vocabulary cannot cover is an error, not a panic; either way decoding what was
    // encoded must work.
    if let Ok(ids) = tokenizer.encode("a b\u{1F600}<s></s>ab", true, true) {
        tokenizer.decode(&ids).map_err(|e| e.to_string())?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn gguf_reader_never_panics(bytes in gguf_bytes()) {
        if let Err(message) = open_gguf(&bytes) {
            prop_assert!(!message.trim().is_empty());
        }
    }
}

#[test]
fn gguf_seed_file_is_valid() {
    // The seed must open, or the generator only ever exercises error paths.
    open_gguf(&gguf_file(3, &valid_metadata(), &[], 0)).expect("valid seed");
}

// ---------------------------------------------------------------------------------------------
// Store export / import

/// A generated result: (case, sample, output, cost, passed, is an error).
type GResult = (u32, u32, String, f64, Option<bool>, bool);
/// A generated run: (index of its version, backend, parameters, results).
type GRun = (usize, String, Value, Vec<GResult>);

/// What to put in a store: units (prompt, files), labels (index of the version, label), runs.
#[derive(Debug, Clone)]
struct StoreContent {
    units: Vec<(String, BTreeMap<String, String>)>,
    labels: Vec<(usize, String)>,
    runs: Vec<GRun>,
}

fn store_content() -> impl Strategy<Value = StoreContent> {
    let name = prop::sample::select(vec!["a", "cot/math", "x/y/z", "ünï", "sp ace"]);
    let files = prop::collection::btree_map(
        prop::sample::select(vec![
            "prompts/p.prompty",
            "prompts/p.tests.yaml",
            "partials/x.j2",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        1..3,
    );
    let result = (
        0u32..4,
        0u32..3,
        any::<String>(),
        prop_oneof![
            Just(0.0),
            0.0f64..10.0,
            Just(f64::MIN_POSITIVE),
            Just(1e300)
        ],
        prop::option::of(any::<bool>()),
        any::<bool>(),
    );
    (
        prop::collection::vec((name.prop_map(str::to_owned), files), 1..4),
        prop::collection::vec((0usize..8, "[a-z]{1,8}"), 0..4),
        prop::collection::vec(
            (
                0usize..8,
                "[a-z-]{1,10}",
                value_with_keys(&["temperature", "seed", "stop"]),
                prop::collection::vec(result, 0..5),
            ),
            0..3,
        ),
    )
        .prop_map(|(units, labels, runs)| StoreContent {
            units,
            labels,
            runs,
        })
}

fn fill(store: &MemoryStore, content: &StoreContent) -> Result<(), StoreError> {
    let mut versions = Vec::new();
    for (prompt, files) in &content.units {
        let unit = UnitFiles {
            prompt: prompt.clone(),
            files: files.clone(),
        };
        let outcome = store.commit(&unit, "fuzz", "tester")?;
        versions.push((prompt.clone(), outcome.id().to_owned()));
    }
    for (i, label) in &content.labels {
        let (prompt, version) = &versions[i % versions.len()];
        store.set_label(prompt, label, version, "tester")?;
    }
    for (i, backend, parameters, results) in &content.runs {
        let (prompt, version) = &versions[i % versions.len()];
        let run = store.begin_run(RunMeta {
            version: version.clone(),
            prompt: prompt.clone(),
            backend: backend.clone(),
            model: "m".into(),
            parameters: parameters.clone(),
        })?;
        for (case, sample, output, cost, passed, error) in results {
            store.record_result(
                run,
                &CaseResult {
                    case: *case,
                    sample: *sample,
                    case_name: format!("case {case}"),
                    messages: vec![StoredMessage {
                        role: "user".into(),
                        content: output.chars().rev().collect(),
                    }],
                    output: output.clone(),
                    finish_reason: Some("stop".into()),
                    latency_ms: 12,
                    ttft_ms: None,
                    usage: TokenUsage {
                        input: 1,
                        output: 2,
                    },
                    cost: *cost,
                    error: error.then(|| output.clone()),
                    cached: false,
                    assertions: vec![json!({"kind": "contains", "ok": passed})],
                    passed: *passed,
                    technique: None,
                },
            )?;
        }
        store.finish_run(run, RunStatus::Complete)?;
    }
    Ok(())
}

fn export(store: &MemoryStore) -> Vec<u8> {
    let mut out = Vec::new();
    store.export(&mut out).expect("export");
    out
}

proptest! {
    #![proptest_config(cases(200))]

    /// export -> import into an empty store -> export gives the same bytes; importing again
    /// changes nothing.
    #[test]
    fn store_export_import_round_trips(content in store_content()) {
        let source = MemoryStore::new();
        fill(&source, &content).expect("fill");
        let exported = export(&source);
        let target = MemoryStore::new();
        target.import(&mut exported.as_slice()).expect("import of an export");
        let again = export(&target);
        prop_assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&exported));
        target.import(&mut exported.as_slice()).expect("second import");
        prop_assert_eq!(export(&target), exported);
    }

    /// A damaged export is refused with the line of the problem, and the store is unchanged.
    #[test]
    fn damaged_imports_are_refused_whole(
        content in store_content(),
        ops in ops(),
        existing in any::<bool>(),
    ) {
        let source = MemoryStore::new();
        fill(&source, &content).expect("fill");
        let damaged = mutate(export(&source), &ops);
        let target = MemoryStore::new();
        if existing {
            target
                .commit(
                    &UnitFiles {
                        prompt: "kept".into(),
                        files: BTreeMap::from([("prompts/kept.prompty".into(), "hi".into())]),
                    },
                    "before",
                    "tester",
                )
                .expect("commit");
        }
        let before = export(&target);
        match target.import(&mut damaged.as_slice()) {
            Ok(_) => {}
            Err(StoreError::Import { line, message }) => {
                let lines = damaged.split(|b| *b == b'\n').count();
                prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}: {message}");
                prop_assert_eq!(export(&target), before);
            }
            Err(other) => {
                prop_assert!(false, "not an import error: {other}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// promptfoo import

const PROMPTFOO_TOP: &[&str] = &[
    "description",
    "prompts",
    "providers",
    "tests",
    "defaultTest",
    "scenarios",
    "outputPath",
    "env",
];
const PROMPTFOO_INNER: &[&str] = &[
    "id",
    "label",
    "raw",
    "config",
    "temperature",
    "max_tokens",
    "apiBaseUrl",
    "apiKeyEnvar",
    "vars",
    "assert",
    "type",
    "value",
    "options",
    "provider",
    "role",
    "content",
    "file://prompt.txt",
    "openai:gpt-4o-mini",
    "anthropic:messages:claude-3-haiku",
];

const PROMPTFOO_SEEDS: &[&str] = &[
    "description: demo\nprompts:\n  - \"Answer: {{question}}\"\n  - id: file://prompts/chat.json\n    label: chat\nproviders:\n  - openai:gpt-4o-mini\n  - id: anthropic:messages:claude-3-haiku\n    config:\n      temperature: 0\ntests:\n  - vars:\n      question: two plus two\n    assert:\n      - type: contains\n        value: \"4\"\n",
];

fn promptfoo_text() -> impl Strategy<Value = String> {
    let structured = yaml_text(document(PROMPTFOO_TOP, PROMPTFOO_INNER)).boxed();
    prop_oneof![
        structured.clone(),
        mutated_text(structured),
        mutated_text(prop::sample::select(PROMPTFOO_SEEDS).prop_map(str::to_owned)),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn promptfoo_import_never_panics(text in promptfoo_text(), files in any::<bool>()) {
        let read = |path: &str| -> Result<String, String> {
            if files {
                Ok(format!("[{{\"role\": \"user\", \"content\": \"{path} {{{{ q }}}}\"}}]"))
            } else {
                Err(format!("{path}: not found"))
            }
        };
        match promptdeck::import::promptfoo::convert(&text, &read) {
            Ok(conversion) => {
                for (path, _) in &conversion.files {
                    // Relative and inside the output folder. (`a..prompty` is a fine name: a
                    // first version of this check looked for ".." anywhere and was wrong.)
                    prop_assert!(
                        !path.starts_with('/')
                            && !path.contains('\\')
                            && path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                        "{path}"
                    );
                }
            }
            Err(promptdeck::import::promptfoo::ImportError::Yaml { line, col, .. }) => {
                prop_assert!(line >= 1 && col >= 1);
                prop_assert!(line <= line_count(&text) + 1, "line {} of {:?}", line, text);
            }
            Err(promptdeck::import::promptfoo::ImportError::Shape(message)) => {
                prop_assert!(!message.is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regression tests: inputs the properties above found.

/// Found by `gguf_reader_never_panics`: a tensor whose dimensions multiply past 2^64. The
/// element count overflowed (a panic in debug builds; in release a wrapped, small size that
/// passed the truncation check).
#[test]
fn gguf_tensor_shape_overflow_is_corrupt_not_a_panic() {
    let tensors = vec![(b"x".to_vec(), vec![u64::MAX, 4096, 32], 0, 0)];
    let err = open_gguf(&gguf_file(3, &valid_metadata(), &tensors, 0)).expect_err("refused");
    assert!(err.contains("impossibly large shape"), "{err}");
}

/// A `general.alignment` of 0 made candle's reader divide by zero.
#[test]
fn gguf_zero_alignment_is_corrupt_not_a_panic() {
    for value in [GValue::U32(0), GValue::I32(0)] {
        let mut metadata = valid_metadata();
        metadata.push(("general.alignment".into(), value));
        let err = open_gguf(&gguf_file(3, &metadata, &[], 0)).expect_err("refused");
        assert!(err.contains("general.alignment"), "{err}");
        // The same file in version 1, with 32-bit lengths.
        let err = open_gguf(&gguf_file(1, &metadata, &[], 0)).expect_err("refused");
        assert!(err.contains("general.alignment"), "{err}");
    }
    // A non-zero alignment still opens.
    let mut metadata = valid_metadata();
    metadata.push(("general.alignment".into(), GValue::U32(64)));
    open_gguf(&gguf_file(3, &metadata, &[], 0)).expect("alignment 64");
}
