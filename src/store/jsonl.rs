//! The export/import file format (JSON Lines) shared by every store backend.
//!
//! Layout: a header line `{"kind":"promptdeck-export","format":1}`, then one
//! line per version, label, label-log entry, run and result, each tagged by
//! `kind`. Backends choose the order (see [`super::Store::export`]); this
//! module owns the encoding and the whole-file validation that runs before an
//! import touches a store, so a rejected file changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::hash::{is_version_id, version_id};
use super::model::{
    CaseResult, Label, LabelLogEntry, Run, RunId, Version, validate_label, validate_prompt,
    validate_unit,
};

/// Export format written by this build.
pub const EXPORT_FORMAT: u64 = 1;
const HEADER_KIND: &str = "promptdeck-export";

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LineRef<'a> {
    #[serde(rename = "promptdeck-export")]
    Header {
        format: u64,
    },
    Version(&'a Version),
    Label(&'a Label),
    LabelLog(&'a LabelLogEntry),
    Run(&'a Run),
    Result {
        run: RunId,
        result: &'a CaseResult,
    },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    #[serde(rename = "promptdeck-export")]
    Header {
        format: u64,
    },
    Version(Version),
    Label(Label),
    LabelLog(LabelLogEntry),
    Run(Run),
    Result {
        run: RunId,
        result: CaseResult,
    },
}

/// Streams export lines; the header is written on creation.
pub struct Exporter<'w> {
    w: &'w mut dyn Write,
}

impl<'w> Exporter<'w> {
    pub fn new(w: &'w mut dyn Write) -> Result<Self, StoreError> {
        let mut e = Exporter { w };
        e.line(&LineRef::Header {
            format: EXPORT_FORMAT,
        })?;
        Ok(e)
    }

    fn line(&mut self, line: &LineRef<'_>) -> Result<(), StoreError> {
        serde_json::to_writer(&mut *self.w, line).map_err(std::io::Error::from)?;
        self.w.write_all(b"\n")?;
        Ok(())
    }

    pub fn version(&mut self, v: &Version) -> Result<(), StoreError> {
        self.line(&LineRef::Version(v))
    }
    pub fn label(&mut self, l: &Label) -> Result<(), StoreError> {
        self.line(&LineRef::Label(l))
    }
    pub fn label_log(&mut self, e: &LabelLogEntry) -> Result<(), StoreError> {
        self.line(&LineRef::LabelLog(e))
    }
    pub fn run(&mut self, r: &Run) -> Result<(), StoreError> {
        self.line(&LineRef::Run(r))
    }
    pub fn result(&mut self, run: RunId, r: &CaseResult) -> Result<(), StoreError> {
        self.line(&LineRef::Result { run, result: r })
    }
    pub fn finish(self) -> Result<(), StoreError> {
        self.w.flush()?;
        Ok(())
    }
}

/// What the target store already holds, as far as validation needs to know.
pub trait Lookup {
    /// The prompt of an existing version.
    fn version_prompt(&self, id: &str) -> Result<Option<String>, StoreError>;
    fn run_exists(&self, id: RunId) -> Result<bool, StoreError>;
}

/// A fully validated import file, in file order, duplicates removed.
#[derive(Debug, Default)]
pub struct Parsed {
    pub versions: Vec<Version>,
    pub labels: Vec<Label>,
    pub label_log: Vec<LabelLogEntry>,
    pub runs: Vec<Run>,
    pub results: Vec<(RunId, CaseResult)>,
}

fn err(line: usize, message: impl Into<String>) -> StoreError {
    StoreError::Import {
        line,
        message: message.into(),
    }
}

/// Reads and validates a whole export file; nothing is applied here.
pub fn parse(r: &mut dyn BufRead, store: &dyn Lookup) -> Result<Parsed, StoreError> {
    let mut p = Parsed::default();
    // Line numbers of items, for referential errors found after parsing.
    let mut label_lines = Vec::new();
    let mut log_lines = Vec::new();
    let mut run_lines = Vec::new();
    let mut result_lines = Vec::new();
    let mut version_prompts: HashMap<String, String> = HashMap::new();
    let mut run_index: HashMap<RunId, usize> = HashMap::new();
    let mut result_index: BTreeMap<(RunId, u32, u32), usize> = BTreeMap::new();
    let mut seen_log: HashSet<LabelLogEntry> = HashSet::new();
    let mut seen_header = false;
    let mut buf = Vec::new();
    let mut lineno = 0usize;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lineno += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| err(lineno, "not valid UTF-8"))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| err(lineno, e.to_string()))?;
        if !seen_header {
            match line {
                Line::Header { format } if format == EXPORT_FORMAT => {
                    seen_header = true;
                    continue;
                }
                Line::Header { format } => {
                    return Err(err(
                        lineno,
                        format!(
                            "export format {format} is not supported (this build reads format {EXPORT_FORMAT})"
                        ),
                    ));
                }
                _ => {
                    return Err(err(
                        lineno,
                        format!("the first line must be the `{HEADER_KIND}` header"),
                    ));
                }
            }
        }
        match line {
            Line::Header { .. } => return Err(err(lineno, "duplicate header line")),
            Line::Version(v) => {
                validate_unit(&v.unit()).map_err(|e| err(lineno, e.to_string()))?;
                if !is_version_id(&v.id) {
                    return Err(err(lineno, format!("`{}` is not a version id", v.id)));
                }
                let actual = version_id(&v.unit());
                if actual != v.id {
                    return Err(err(
                        lineno,
                        format!(
                            "version {} does not match its content (content hashes to {actual})",
                            v.id
                        ),
                    ));
                }
                if let Some(parent) = v.parent.as_deref().filter(|p| !is_version_id(p)) {
                    return Err(err(
                        lineno,
                        format!("parent `{parent}` is not a version id"),
                    ));
                }
                if version_prompts.contains_key(&v.id) {
                    if p.versions.iter().any(|x| x.id == v.id && *x != v) {
                        return Err(err(
                            lineno,
                            format!("version {} appears twice with different metadata", v.id),
                        ));
                    }
                    continue;
                }
                version_prompts.insert(v.id.clone(), v.prompt.clone());
                p.versions.push(v);
            }
            Line::Label(l) => {
                validate_prompt(&l.prompt).map_err(|e| err(lineno, e.to_string()))?;
                validate_label(&l.label).map_err(|e| err(lineno, e.to_string()))?;
                label_lines.push(lineno);
                p.labels.push(l);
            }
            Line::LabelLog(e) => {
                validate_prompt(&e.prompt).map_err(|x| err(lineno, x.to_string()))?;
                validate_label(&e.label).map_err(|x| err(lineno, x.to_string()))?;
                if let Some(from) = e.from.as_deref().filter(|f| !is_version_id(f)) {
                    return Err(err(lineno, format!("`{from}` is not a version id")));
                }
                if !seen_log.insert(e.clone()) {
                    continue;
                }
                log_lines.push(lineno);
                p.label_log.push(e);
            }
            Line::Run(run) => {
                validate_prompt(&run.prompt).map_err(|x| err(lineno, x.to_string()))?;
                if let Some(&i) = run_index.get(&run.id) {
                    if p.runs.get(i) != Some(&run) {
                        return Err(err(
                            lineno,
                            format!("run {} appears twice with different data", run.id),
                        ));
                    }
                    continue;
                }
                run_index.insert(run.id, p.runs.len());
                run_lines.push(lineno);
                p.runs.push(run);
            }
            Line::Result { run, result } => {
                let key = (run, result.case, result.sample);
                if let Some(&i) = result_index.get(&key) {
                    if p.results.get(i).map(|(_, r)| r) != Some(&result) {
                        return Err(err(
                            lineno,
                            format!(
                                "result (case {}, sample {}) of run {run} appears twice with different data",
                                result.case, result.sample
                            ),
                        ));
                    }
                    continue;
                }
                result_index.insert(key, p.results.len());
                result_lines.push(lineno);
                p.results.push((run, result));
            }
        }
    }
    if !seen_header {
        return Err(err(lineno.max(1), "empty file: missing export header"));
    }

    // Referential checks: targets may come from the file or from the store.
    let prompt_of = |id: &str| -> Result<Option<String>, StoreError> {
        match version_prompts.get(id) {
            Some(p) => Ok(Some(p.clone())),
            None => store.version_prompt(id),
        }
    };
    let check_version = |line: usize, id: &str, prompt: &str| -> Result<(), StoreError> {
        match prompt_of(id)? {
            Some(p) if p == prompt => Ok(()),
            Some(p) => Err(err(
                line,
                format!("version {id} belongs to prompt `{p}`, not `{prompt}`"),
            )),
            None => Err(err(line, format!("unknown version {id}"))),
        }
    };
    for (l, &line) in p.labels.iter().zip(&label_lines) {
        check_version(line, &l.version, &l.prompt)?;
    }
    for (e, &line) in p.label_log.iter().zip(&log_lines) {
        check_version(line, &e.to, &e.prompt)?;
    }
    for (r, &line) in p.runs.iter().zip(&run_lines) {
        check_version(line, &r.version, &r.prompt)?;
    }
    for ((run, _), &line) in p.results.iter().zip(&result_lines) {
        if !run_index.contains_key(run) && !store.run_exists(*run)? {
            return Err(err(line, format!("result for unknown run {run}")));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Empty;
    impl Lookup for Empty {
        fn version_prompt(&self, _: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        fn run_exists(&self, _: RunId) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    fn parse_str(s: &str) -> Result<Parsed, StoreError> {
        parse(&mut s.as_bytes(), &Empty)
    }

    fn line_of(r: Result<Parsed, StoreError>) -> usize {
        match r {
            Err(StoreError::Import { line, .. }) => line,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted bad input"),
        }
    }

    #[test]
    fn header_is_written_exactly() {
        let mut out = Vec::new();
        assert!(Exporter::new(&mut out).is_ok());
        assert_eq!(out, b"{\"kind\":\"promptdeck-export\",\"format\":1}\n");
    }

    #[test]
    fn header_rules() {
        assert!(parse_str("{\"kind\":\"promptdeck-export\",\"format\":1}\n").is_ok());
        assert_eq!(line_of(parse_str("")), 1);
        assert_eq!(
            line_of(parse_str("{\"kind\":\"promptdeck-export\",\"format\":2}\n")),
            1
        );
        assert_eq!(
            line_of(parse_str(
                "\n{\"kind\":\"label\",\"prompt\":\"p\",\"label\":\"x\",\"version\":\"v\",\"at\":0,\"by\":\"a\"}"
            )),
            2
        );
        assert_eq!(
            line_of(parse_str(
                "{\"kind\":\"promptdeck-export\",\"format\":1}\n{\"kind\":\"nope\"}\n"
            )),
            2
        );
        assert_eq!(
            line_of(parse_str(
                "{\"kind\":\"promptdeck-export\",\"format\":1}\nnot json\n"
            )),
            2
        );
    }

    #[test]
    fn tampered_version_is_rejected() {
        let v = Version {
            id: "0".repeat(64),
            prompt: "p".into(),
            parent: None,
            created_at: 0,
            message: String::new(),
            author: String::new(),
            files: [("p.prompt".to_string(), "x".to_string())].into(),
        };
        let mut out = Vec::new();
        if let Ok(mut e) = Exporter::new(&mut out) {
            assert!(e.version(&v).is_ok());
        }
        let text = String::from_utf8(out).unwrap_or_default();
        match parse_str(&text) {
            Err(StoreError::Import { line: 2, message }) => {
                assert!(message.contains("does not match its content"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dangling_references_are_rejected() {
        let text = format!(
            "{{\"kind\":\"promptdeck-export\",\"format\":1}}\n{{\"kind\":\"label\",\"prompt\":\"p\",\"label\":\"prod\",\"version\":\"{}\",\"at\":0,\"by\":\"a\"}}\n",
            "a".repeat(64)
        );
        assert_eq!(line_of(parse_str(&text)), 2);
    }
}
