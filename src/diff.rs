//! Pure diff model for prompts, test files and model outputs.
//!
//! This module owns everything promptdeck knows about *differences*: line
//! diffs with word-level emphasis ([`diff_texts`]), multi-file diffs of two
//! versions of a prompt set ([`diff_file_sets`]), short word/char diffs of
//! model outputs ([`diff_words`], [`diff_chars`], [`summarize_word_diff`]),
//! unified-diff rendering ([`render_unified`]) and the side-by-side row model
//! the TUI draws ([`side_by_side`], [`change_positions`]).
//!
//! It does no IO and knows nothing about terminals: colour is a [`Palette`] of
//! escape strings chosen by the caller (`--color auto|always|never`,
//! `NO_COLOR`), so every function here is deterministic and cheap to test.
//! Diffs use similar's Patience algorithm with no deadline, so the same
//! inputs always give the same output regardless of machine load; instead of
//! a deadline, a fixed work budget makes large and very different inputs fall
//! back to coarser (still correct) diffs: no word emphasis, words instead of
//! chars, or one replaced block between the common prefix and suffix.
//!
//! # JSON shape (`--format json`)
//!
//! [`FileDiff`] and everything inside it implement `Serialize`. A
//! `Vec<FileDiff>` serialises as:
//!
//! ```json
//! [
//!   {
//!     "old_path": "prompt.txt",
//!     "new_path": "prompt.txt",
//!     "status": "modified",
//!     "inserted": 1,
//!     "deleted": 1,
//!     "hunks": [
//!       {
//!         "old_start": 1, "old_len": 2, "new_start": 1, "new_len": 2,
//!         "lines": [
//!           { "tag": "equal", "old_line": 1, "new_line": 1, "eol": "lf",
//!             "spans": [ { "text": "You are terse.", "emphasized": false } ] },
//!           { "tag": "delete", "old_line": 2, "new_line": null, "eol": "lf",
//!             "spans": [ { "text": "Answer in ", "emphasized": false },
//!                        { "text": "French", "emphasized": true },
//!                        { "text": ".", "emphasized": false } ] },
//!           { "tag": "insert", "old_line": null, "new_line": 2, "eol": "lf",
//!             "spans": [ { "text": "Answer in ", "emphasized": false },
//!                        { "text": "German", "emphasized": true },
//!                        { "text": ".", "emphasized": false } ] }
//!         ]
//!       }
//!     ]
//!   }
//! ]
//! ```
//!
//! * `status`: `"added" | "removed" | "modified" | "unchanged"`.
//! * `tag`: `"equal" | "delete" | "insert"`; line numbers are 1-based and
//!   `null` on the side the line does not exist in.
//! * Hunk starts and lengths are exactly the numbers of the `@@ -s,l +s,l @@`
//!   header (so an empty side has `start` = the line before, possibly 0).
//! * `spans` concatenate to the line text *without* its line ending; `eol` is
//!   `"lf" | "crlf" | "none"` (`"none"`: last line without a final newline).
//!   `emphasized` marks the words that changed within a changed line.

use std::collections::BTreeMap;

use serde::Serialize;
use similar::{Algorithm, DiffOp, DiffTag, DiffableStr, TextDiff};

/// Work allowed for one diff, in units of (old + new tokens) × edit distance.
/// similar's Myers/Patience without a deadline costs O((N+M)·D); inputs whose
/// edit distance would exceed this budget are detected up front by a cheap
/// bounded check and diffed more coarsely instead. Unlike a time deadline this
/// keeps results identical on every machine while bounding latency (well
/// under 0.1 s).
const DIFF_BUDGET: usize = 1_000_000;

/// Which side(s) of a diff a line or piece of text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tag {
    Equal,
    Delete,
    Insert,
}

impl From<similar::ChangeTag> for Tag {
    fn from(tag: similar::ChangeTag) -> Self {
        match tag {
            similar::ChangeTag::Equal => Tag::Equal,
            similar::ChangeTag::Delete => Tag::Delete,
            similar::ChangeTag::Insert => Tag::Insert,
        }
    }
}

/// Unit of comparison for [`diff_with_granularity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Line,
    Word,
    Char,
}

/// How a line ended in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Eol {
    Lf,
    CrLf,
    /// Last line of a text that does not end with a newline.
    None,
}

impl Eol {
    pub fn as_str(self) -> &'static str {
        match self {
            Eol::Lf => "\n",
            Eol::CrLf => "\r\n",
            Eol::None => "",
        }
    }
}

/// A run of text within a line; `emphasized` marks the changed words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub text: String,
    pub emphasized: bool,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub tag: Tag,
    /// 1-based line number in the old text, `None` for insertions.
    pub old_line: Option<usize>,
    /// 1-based line number in the new text, `None` for deletions.
    pub new_line: Option<usize>,
    pub eol: Eol,
    pub spans: Vec<Span>,
}

impl DiffLine {
    /// The line text without its line ending.
    pub fn text(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }
}

/// A unified-diff hunk; the numbers are those of the `@@` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hunk {
    pub old_start: usize,
    pub old_len: usize,
    pub new_start: usize,
    pub new_len: usize,
    pub lines: Vec<DiffLine>,
}

impl Hunk {
    /// `@@ -s,l +s,l @@`, omitting `,1` like GNU diff and git do.
    pub fn header(&self) -> String {
        format!(
            "@@ {} @@",
            hunk_ranges(self.old_start, self.old_len, self.new_start, self.new_len)
        )
    }
}

fn hunk_ranges(old_start: usize, old_len: usize, new_start: usize, new_len: usize) -> String {
    fn range(start: usize, len: usize) -> String {
        if len == 1 {
            start.to_string()
        } else {
            format!("{start},{len}")
        }
    }
    format!(
        "-{} +{}",
        range(old_start, old_len),
        range(new_start, new_len)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Added,
    Removed,
    Modified,
    Unchanged,
}

/// The diff of one file (or of two anonymous texts, with empty paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub old_path: String,
    pub new_path: String,
    pub status: FileStatus,
    /// Inserted lines in the whole file, not just inside hunks.
    pub inserted: usize,
    /// Deleted lines in the whole file, not just inside hunks.
    pub deleted: usize,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    pub fn with_paths(mut self, old_path: impl Into<String>, new_path: impl Into<String>) -> Self {
        self.old_path = old_path.into();
        self.new_path = new_path.into();
        self
    }

    pub fn has_changes(&self) -> bool {
        self.inserted > 0 || self.deleted > 0
    }
}

/// A piece of a word/char/line diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub tag: Tag,
    pub text: String,
}

/// Splits on `\n` only, keeping terminators: a lone `\r` is content, as it is
/// for `patch` and git, so the unified output stays applicable.
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn eol_of(line: &str) -> Eol {
    if line.ends_with("\r\n") {
        Eol::CrLf
    } else if line.ends_with('\n') {
        Eol::Lf
    } else {
        Eol::None
    }
}

fn push_span(spans: &mut Vec<Span>, emphasized: bool, text: &str) {
    if text.is_empty() {
        return;
    }
    match spans.last_mut() {
        Some(last) if last.emphasized == emphasized => last.text.push_str(text),
        _ => spans.push(Span {
            text: text.to_owned(),
            emphasized,
        }),
    }
}

/// Builds a line from similar's `(emphasized, text)` values, moving the line
/// terminator out of the spans into `eol`.
fn make_line<'a>(
    tag: Tag,
    old_index: Option<usize>,
    new_index: Option<usize>,
    values: impl IntoIterator<Item = (bool, &'a str)>,
) -> DiffLine {
    let mut spans = Vec::new();
    for (emphasized, text) in values {
        push_span(&mut spans, emphasized, text);
    }
    let full: String = spans.iter().map(|s| s.text.as_str()).collect();
    let eol = eol_of(&full);
    // The terminator may straddle spans in theory, so trim bytes from the end
    // across spans; all removed bytes are ASCII so char boundaries hold.
    let mut to_trim = eol.as_str().len();
    while to_trim > 0 {
        let Some(last) = spans.last_mut() else { break };
        let cut = to_trim.min(last.text.len());
        last.text.truncate(last.text.len() - cut);
        to_trim -= cut;
        if last.text.is_empty() {
            spans.pop();
        }
    }
    DiffLine {
        tag,
        old_line: old_index.map(|i| i + 1),
        new_line: new_index.map(|i| i + 1),
        spans,
        eol,
    }
}

/// True when `old` can be turned into `new` with at most `max_d` insertions
/// plus deletions: Myers' greedy forward pass, O((N+M)·max_d) time and
/// O(max_d) memory, stopping as soon as the end is reached.
fn within_edit_distance<T: PartialEq>(old: &[T], new: &[T], max_d: usize) -> bool {
    let (n, m) = (old.len(), new.len());
    let max_d = max_d.min(n + m);
    // v[k + offset]: furthest x reached on diagonal k = x - y.
    let offset = max_d + 1;
    let mut v: Vec<Option<usize>> = vec![None; 2 * max_d + 3];
    for d in 0..=max_d {
        for i in 0..=d {
            let k = 2 * i as isize - d as isize;
            let idx = (k + offset as isize) as usize;
            let valid = |x: usize| x <= n && x as isize - k >= 0 && x as isize - k <= m as isize;
            let start = if d == 0 {
                Some(0)
            } else {
                let down = v.get(idx + 1).copied().flatten().filter(|&x| valid(x));
                let right = v
                    .get(idx.wrapping_sub(1))
                    .copied()
                    .flatten()
                    .map(|x| x + 1)
                    .filter(|&x| valid(x));
                down.max(right)
            };
            let Some(mut x) = start else {
                if let Some(slot) = v.get_mut(idx) {
                    *slot = None;
                }
                continue;
            };
            let mut y = (x as isize - k) as usize;
            while let (Some(a), Some(b)) = (old.get(x), new.get(y)) {
                if a != b {
                    break;
                }
                x += 1;
                y += 1;
            }
            if x >= n && y >= m {
                return true;
            }
            if let Some(slot) = v.get_mut(idx) {
                *slot = Some(x);
            }
        }
    }
    false
}

fn within_budget<T: PartialEq>(old: &[T], new: &[T]) -> bool {
    let max_d = DIFF_BUDGET / (old.len() + new.len()).max(1);
    within_edit_distance(old, new, max_d)
}

/// Fallback when a fine diff would be too costly: keep the common prefix and
/// suffix, replace the middle wholesale.
fn trimmed_replace_ops<T: PartialEq>(old: &[T], new: &[T]) -> Vec<DiffOp> {
    // `prefix` and `suffix` count pairs of a zip, so they never exceed either
    // length and the slicing and subtractions below cannot fail.
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest
        .iter()
        .rev()
        .zip(new_rest.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_mid = old_rest.len() - suffix;
    let new_mid = new_rest.len() - suffix;
    let mut ops = Vec::new();
    if prefix > 0 {
        ops.push(DiffOp::Equal {
            old_index: 0,
            new_index: 0,
            len: prefix,
        });
    }
    match (old_mid, new_mid) {
        (0, 0) => {}
        (old_len, 0) => ops.push(DiffOp::Delete {
            old_index: prefix,
            old_len,
            new_index: prefix,
        }),
        (0, new_len) => ops.push(DiffOp::Insert {
            old_index: prefix,
            new_index: prefix,
            new_len,
        }),
        (old_len, new_len) => ops.push(DiffOp::Replace {
            old_index: prefix,
            old_len,
            new_index: prefix,
            new_len,
        }),
    }
    if suffix > 0 {
        ops.push(DiffOp::Equal {
            old_index: prefix + old_mid,
            new_index: prefix + new_mid,
            len: suffix,
        });
    }
    ops
}

/// Word tokens of a block of lines exactly as similar's inline diff sees them.
fn inline_tokens<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .flat_map(|l| l.tokenize_unicode_words())
        .collect()
}

/// Line diff of two texts with `context` lines around each hunk; changed
/// lines carry word-level emphasis. Paths are empty: see
/// [`FileDiff::with_paths`].
pub fn diff_texts(old: &str, new: &str, context: usize) -> FileDiff {
    let old_lines = split_lines(old);
    let new_lines = split_lines(new);
    let mut config = TextDiff::configure();
    config.algorithm(Algorithm::Patience);
    let diff =
        within_budget(&old_lines, &new_lines).then(|| config.diff_slices(&old_lines, &new_lines));
    let ops = match &diff {
        Some(diff) => diff.ops().to_vec(),
        None => trimmed_replace_ops(&old_lines, &new_lines),
    };

    let (mut inserted, mut deleted) = (0, 0);
    for op in &ops {
        let (tag, o, n) = op.as_tag_tuple();
        if tag != DiffTag::Equal {
            deleted += o.len();
            inserted += n.len();
        }
    }

    // similar computes `context * 2`; clamping avoids overflow on huge values
    // without changing the result (no hunk can use more context than lines).
    let context = context.min(old_lines.len().max(new_lines.len()) + 1);
    let mut hunks = Vec::new();
    for group in similar::group_diff_ops(ops, context) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_begin = first.old_range().start;
        let new_begin = first.new_range().start;
        let old_len = last.old_range().end.saturating_sub(old_begin);
        let new_len = last.new_range().end.saturating_sub(new_begin);
        let mut lines = Vec::new();
        for op in &group {
            let (tag, o, n) = op.as_tag_tuple();
            if let (DiffTag::Replace, Some(diff)) = (tag, &diff) {
                let old_block = old_lines.get(o.clone()).unwrap_or_default();
                let new_block = new_lines.get(n.clone()).unwrap_or_default();
                if within_budget(&inline_tokens(old_block), &inline_tokens(new_block)) {
                    for change in diff.iter_inline_changes_deadline(op, None) {
                        lines.push(make_line(
                            change.tag().into(),
                            change.old_index(),
                            change.new_index(),
                            change.values().iter().copied(),
                        ));
                    }
                    continue;
                }
            }
            if tag == DiffTag::Equal {
                for (i, j) in o.zip(n) {
                    let text = old_lines.get(i).copied().unwrap_or_default();
                    lines.push(make_line(Tag::Equal, Some(i), Some(j), [(false, text)]));
                }
                continue;
            }
            for i in o {
                let text = old_lines.get(i).copied().unwrap_or_default();
                lines.push(make_line(Tag::Delete, Some(i), None, [(false, text)]));
            }
            for j in n {
                let text = new_lines.get(j).copied().unwrap_or_default();
                lines.push(make_line(Tag::Insert, None, Some(j), [(false, text)]));
            }
        }
        // Unified diff numbers an empty range by the line before it.
        let header_start = |begin: usize, len: usize| if len == 0 { begin } else { begin + 1 };
        hunks.push(Hunk {
            old_start: header_start(old_begin, old_len),
            old_len,
            new_start: header_start(new_begin, new_len),
            new_len,
            lines,
        });
    }

    FileDiff {
        old_path: String::new(),
        new_path: String::new(),
        status: if inserted + deleted > 0 {
            FileStatus::Modified
        } else {
            FileStatus::Unchanged
        },
        inserted,
        deleted,
        hunks,
    }
}

/// Diffs two sets of files keyed by path, skipping unchanged files.
pub fn diff_file_sets(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    context: usize,
) -> Vec<FileDiff> {
    diff_all_file_sets(old, new, context)
        .into_iter()
        .filter(|d| d.status != FileStatus::Unchanged)
        .collect()
}

/// Like [`diff_file_sets`] but keeps unchanged files (status `Unchanged`,
/// no hunks), e.g. for a TUI file list.
pub fn diff_all_file_sets(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    context: usize,
) -> Vec<FileDiff> {
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (status, diff) = match (old.get(path), new.get(path)) {
                (Some(o), Some(n)) => {
                    let d = diff_texts(o, n, context);
                    (d.status, d)
                }
                (None, Some(n)) => (FileStatus::Added, diff_texts("", n, context)),
                (Some(o), None) => (FileStatus::Removed, diff_texts(o, "", context)),
                (None, None) => return None,
            };
            Some(FileDiff {
                status,
                ..diff.with_paths(path.as_str(), path.as_str())
            })
        })
        .collect()
}

fn tokenize(text: &str, granularity: Granularity) -> Vec<&str> {
    match granularity {
        Granularity::Char => text.tokenize_graphemes(),
        Granularity::Word => text.tokenize_unicode_words(),
        Granularity::Line => split_lines(text),
    }
}

/// Diffs at the given granularity; adjacent pieces with the same tag are
/// merged, and within a replaced block deletions come before insertions.
///
/// `Word` uses Unicode word boundaries (so `7.` is `7` + `.`); `Char` uses
/// grapheme clusters so combining marks and emoji are never split. When the
/// texts are too large and different for the requested granularity (see
/// `DIFF_BUDGET`), the next coarser one is used, and past lines the differing
/// middle is reported as one replacement.
pub fn diff_with_granularity(old: &str, new: &str, granularity: Granularity) -> Vec<Change> {
    let coarser = match granularity {
        Granularity::Char => &[Granularity::Char, Granularity::Word, Granularity::Line][..],
        Granularity::Word => &[Granularity::Word, Granularity::Line][..],
        Granularity::Line => &[Granularity::Line][..],
    };
    let mut tokens = (Vec::new(), Vec::new());
    let mut ops = None;
    for &g in coarser {
        tokens = (tokenize(old, g), tokenize(new, g));
        if within_budget(&tokens.0, &tokens.1) {
            ops = Some(similar::capture_diff_slices(
                Algorithm::Patience,
                &tokens.0,
                &tokens.1,
            ));
            break;
        }
    }
    let (old_tokens, new_tokens) = tokens;
    let ops = ops.unwrap_or_else(|| trimmed_replace_ops(&old_tokens, &new_tokens));

    let mut out: Vec<Change> = Vec::new();
    let mut push = |tag: Tag, pieces: &[&str]| {
        for text in pieces.iter().filter(|t| !t.is_empty()) {
            match out.last_mut() {
                Some(last) if last.tag == tag => last.text.push_str(text),
                _ => out.push(Change {
                    tag,
                    text: (*text).to_owned(),
                }),
            }
        }
    };
    for op in &ops {
        let (tag, o, n) = op.as_tag_tuple();
        let old_part = old_tokens.get(o).unwrap_or_default();
        let new_part = new_tokens.get(n).unwrap_or_default();
        match tag {
            DiffTag::Equal => push(Tag::Equal, old_part),
            DiffTag::Delete => push(Tag::Delete, old_part),
            DiffTag::Insert => push(Tag::Insert, new_part),
            DiffTag::Replace => {
                push(Tag::Delete, old_part);
                push(Tag::Insert, new_part);
            }
        }
    }
    out
}

/// Word diff of two short texts (e.g. two model outputs).
pub fn diff_words(old: &str, new: &str) -> Vec<Change> {
    diff_with_granularity(old, new, Granularity::Word)
}

/// Character (grapheme) diff of two short texts.
pub fn diff_chars(old: &str, new: &str) -> Vec<Change> {
    diff_with_granularity(old, new, Granularity::Char)
}

/// Keeps the summary on one line whatever the outputs contain.
fn escape_one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn take_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn take_last_chars(s: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    match s.char_indices().rev().nth(n - 1) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

/// Renders word-diff pieces inline, keeping at most `ctx` chars of unchanged
/// text on each side of a change (`None`: keep everything).
fn inline_summary(pieces: &[Change], ctx: Option<usize>) -> String {
    let has_changes = pieces.iter().any(|p| p.tag != Tag::Equal);
    let last = pieces.len().saturating_sub(1);
    let mut out = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        match piece.tag {
            Tag::Delete => {
                out.push_str("[-");
                out.push_str(&piece.text);
                out.push_str("-]");
            }
            Tag::Insert => {
                out.push_str("{+");
                out.push_str(&piece.text);
                out.push_str("+}");
            }
            Tag::Equal => {
                let text = piece.text.as_str();
                let n = text.chars().count();
                match ctx {
                    Some(ctx) if has_changes => {
                        let (keep_head, keep_tail) = match (i == 0, i == last) {
                            (true, true) => (n, 0),
                            (true, false) => (0, ctx),
                            (false, true) => (ctx, 0),
                            (false, false) => (ctx, ctx),
                        };
                        if keep_head + keep_tail + 1 >= n {
                            out.push_str(text);
                        } else {
                            out.push_str(take_chars(text, keep_head));
                            out.push('…');
                            out.push_str(take_last_chars(text, keep_tail));
                        }
                    }
                    _ => out.push_str(text),
                }
            }
        }
    }
    out
}

/// One-line inline word diff such as `The answer is [-6-]{+7+}.`, at most
/// `max_len` chars: unchanged text far from changes is elided with `…`, and
/// as a last resort the tail is cut. Newlines appear as `\n`.
pub fn summarize_word_diff(old: &str, new: &str, max_len: usize) -> String {
    let pieces: Vec<Change> = diff_words(old, new)
        .into_iter()
        .map(|c| Change {
            tag: c.tag,
            text: escape_one_line(&c.text),
        })
        .collect();
    let fits = |s: &str| s.chars().count() <= max_len;
    let full = inline_summary(&pieces, None);
    if fits(&full) {
        return full;
    }
    let mut tightest = full;
    for ctx in [40, 20, 10, 5, 2, 0] {
        let candidate = inline_summary(&pieces, Some(ctx));
        if fits(&candidate) {
            return candidate;
        }
        tightest = candidate;
    }
    if max_len == 0 {
        return String::new();
    }
    let mut cut = take_chars(&tightest, max_len - 1).to_owned();
    cut.push('…');
    cut
}

/// Escape codes used by [`render_unified_with`]; empty strings mean no colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    pub file_header: &'static str,
    pub hunk_header: &'static str,
    pub delete: &'static str,
    pub insert: &'static str,
    /// Changed words inside a deleted line.
    pub delete_emph: &'static str,
    /// Changed words inside an inserted line.
    pub insert_emph: &'static str,
    pub reset: &'static str,
}

impl Palette {
    pub const PLAIN: Palette = Palette {
        file_header: "",
        hunk_header: "",
        delete: "",
        insert: "",
        delete_emph: "",
        insert_emph: "",
        reset: "",
    };

    /// Bold headers, cyan hunk ranges, red/green lines, changed words in
    /// reverse video (readable on light and dark backgrounds alike).
    pub const ANSI: Palette = Palette {
        file_header: "\x1b[1m",
        hunk_header: "\x1b[36m",
        delete: "\x1b[31m",
        insert: "\x1b[32m",
        delete_emph: "\x1b[7;31m",
        insert_emph: "\x1b[7;32m",
        reset: "\x1b[0m",
    };

    pub fn new(color: bool) -> Palette {
        if color { Palette::ANSI } else { Palette::PLAIN }
    }
}

/// Writes `text` in `code`, reset before the line ends so that every line is
/// self-contained for pagers and `grep`.
fn push_colored(out: &mut String, code: &str, text: &str, reset: &str) {
    if code.is_empty() || text.is_empty() {
        out.push_str(text);
    } else {
        out.push_str(code);
        out.push_str(text);
        out.push_str(reset);
    }
}

fn header_name(path: &str, label: &str, side: &str) -> String {
    match (path.is_empty(), label.is_empty()) {
        (true, true) => side.to_owned(),
        (true, false) => label.to_owned(),
        // A tab (as in `diff -u`) keeps the label out of the file name for
        // both `patch` and `git apply`; a space would not.
        (false, true) => format!("{side}/{path}"),
        (false, false) => format!("{side}/{path}\t({label})"),
    }
}

fn render_line(out: &mut String, line: &DiffLine, palette: &Palette) {
    let (prefix, base, emph) = match line.tag {
        Tag::Equal => (' ', "", ""),
        Tag::Delete => ('-', palette.delete, palette.delete_emph),
        Tag::Insert => ('+', palette.insert, palette.insert_emph),
    };
    // Codes go after the prefix so every line still starts with ` `, `-` or
    // `+` and stripping the codes gives back the plain, applicable diff.
    out.push(prefix);
    let mut current: Option<&str> = None;
    for span in &line.spans {
        let want = if span.emphasized { emph } else { base };
        if current != Some(want) {
            if current.is_some_and(|c| !c.is_empty()) {
                out.push_str(palette.reset);
            }
            out.push_str(want);
            current = Some(want);
        }
        out.push_str(&span.text);
    }
    if current.is_some_and(|c| !c.is_empty()) {
        out.push_str(palette.reset);
    }
    match line.eol {
        Eol::None => out.push_str("\n\\ No newline at end of file\n"),
        eol => out.push_str(eol.as_str()),
    }
}

/// Unified diff of `diffs` that `patch -p1` / `git apply` accept when
/// `color` is false. Files without hunks are skipped.
pub fn render_unified(diffs: &[FileDiff], old_label: &str, new_label: &str, color: bool) -> String {
    render_unified_with(diffs, old_label, new_label, &Palette::new(color))
}

/// [`render_unified`] with an explicit palette.
pub fn render_unified_with(
    diffs: &[FileDiff],
    old_label: &str,
    new_label: &str,
    palette: &Palette,
) -> String {
    let mut out = String::new();
    for file in diffs.iter().filter(|f| !f.hunks.is_empty()) {
        let old_name = if file.status == FileStatus::Added {
            "/dev/null".to_owned()
        } else {
            header_name(&file.old_path, old_label, "a")
        };
        let new_name = if file.status == FileStatus::Removed {
            "/dev/null".to_owned()
        } else {
            header_name(&file.new_path, new_label, "b")
        };
        out.push_str("--- ");
        push_colored(&mut out, palette.file_header, &old_name, palette.reset);
        out.push_str("\n+++ ");
        push_colored(&mut out, palette.file_header, &new_name, palette.reset);
        out.push('\n');
        for hunk in &file.hunks {
            let ranges = hunk_ranges(hunk.old_start, hunk.old_len, hunk.new_start, hunk.new_len);
            out.push_str("@@ ");
            push_colored(&mut out, palette.hunk_header, &ranges, palette.reset);
            out.push_str(" @@\n");
            for line in &hunk.lines {
                render_line(&mut out, line, palette);
            }
        }
    }
    out
}

/// One side of a side-by-side row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberedLine {
    /// 1-based line number on this side.
    pub number: usize,
    pub tag: Tag,
    pub eol: Eol,
    pub spans: Vec<Span>,
}

/// A row of the two-column view. Rows of one hunk share `hunk`; the TUI draws
/// a separator where it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideBySideRow {
    pub hunk: usize,
    pub left: Option<NumberedLine>,
    pub right: Option<NumberedLine>,
}

impl SideBySideRow {
    pub fn is_change(&self) -> bool {
        let changed =
            |side: &Option<NumberedLine>| side.as_ref().is_some_and(|l| l.tag != Tag::Equal);
        changed(&self.left) || changed(&self.right)
    }
}

fn numbered(line: &DiffLine, number: Option<usize>) -> Option<NumberedLine> {
    Some(NumberedLine {
        number: number?,
        tag: line.tag,
        spans: line.spans.clone(),
        eol: line.eol,
    })
}

/// Rows for a two-column view: equal lines on both sides, and within each run
/// of changes the i-th deletion beside the i-th insertion (the shorter side
/// padded with `None`), so both columns scroll together.
pub fn side_by_side(file: &FileDiff) -> Vec<SideBySideRow> {
    let mut rows = Vec::new();
    for (hunk_index, hunk) in file.hunks.iter().enumerate() {
        let mut deletes: Vec<&DiffLine> = Vec::new();
        let mut inserts: Vec<&DiffLine> = Vec::new();
        let flush = |rows: &mut Vec<SideBySideRow>,
                     deletes: &mut Vec<&DiffLine>,
                     inserts: &mut Vec<&DiffLine>| {
            for i in 0..deletes.len().max(inserts.len()) {
                rows.push(SideBySideRow {
                    hunk: hunk_index,
                    left: deletes.get(i).and_then(|l| numbered(l, l.old_line)),
                    right: inserts.get(i).and_then(|l| numbered(l, l.new_line)),
                });
            }
            deletes.clear();
            inserts.clear();
        };
        for line in &hunk.lines {
            match line.tag {
                Tag::Delete => deletes.push(line),
                Tag::Insert => inserts.push(line),
                Tag::Equal => {
                    flush(&mut rows, &mut deletes, &mut inserts);
                    rows.push(SideBySideRow {
                        hunk: hunk_index,
                        left: numbered(line, line.old_line),
                        right: numbered(line, line.new_line),
                    });
                }
            }
        }
        flush(&mut rows, &mut deletes, &mut inserts);
    }
    rows
}

/// Indexes of rows where a block of changes starts, for jump-to-next-change.
pub fn change_positions(rows: &[SideBySideRow]) -> Vec<usize> {
    rows.iter()
        .enumerate()
        .filter(|&(i, row)| {
            row.is_change()
                && match i.checked_sub(1).and_then(|p| rows.get(p)) {
                    Some(prev) => !prev.is_change() || prev.hunk != row.hunk,
                    None => true,
                }
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_PROMPT: &str = "You are a helpful assistant.\nAnswer in French.\nKeep answers short.\n\nQuestion: {{ question }}\n";
    const NEW_PROMPT: &str = "You are a helpful assistant.\nAnswer in German.\nKeep answers short.\n\nQuestion: {{ question }}\nThink step by step.\n";

    fn prompt_sets() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let old = BTreeMap::from([
            ("prompt.txt".to_owned(), OLD_PROMPT.to_owned()),
            ("notes.md".to_owned(), "same\n".to_owned()),
            (
                "tests.yaml".to_owned(),
                "- input: 2+2\n  expect: \"4\"\n".to_owned(),
            ),
        ]);
        let new = BTreeMap::from([
            ("prompt.txt".to_owned(), NEW_PROMPT.to_owned()),
            ("notes.md".to_owned(), "same\n".to_owned()),
            (
                "tests.yaml".to_owned(),
                "- input: 2+2\n  expect: \"4\"\n- input: 3+4\n  expect: \"7\"".to_owned(),
            ),
        ]);
        (old, new)
    }

    /// Rebuilds one side of the text from a diff made with full context.
    fn side(diff: &FileDiff, keep: Tag) -> String {
        let mut out = String::new();
        for line in diff.hunks.iter().flat_map(|h| &h.lines) {
            if line.tag == Tag::Equal || line.tag == keep {
                out.push_str(&line.text());
                out.push_str(line.eol.as_str());
            }
        }
        out
    }

    /// Applies hunks to `old` the way `patch` would, checking context lines.
    fn apply(old: &str, diff: &FileDiff) -> String {
        let old_lines = split_lines(old);
        let mut out = String::new();
        let mut next = 0; // index of the next old line not yet copied
        for hunk in &diff.hunks {
            let begin = if hunk.old_len == 0 {
                hunk.old_start
            } else {
                hunk.old_start - 1
            };
            for l in &old_lines[next..begin] {
                out.push_str(l);
            }
            next = begin;
            for line in &hunk.lines {
                let full = format!("{}{}", line.text(), line.eol.as_str());
                match line.tag {
                    Tag::Equal | Tag::Delete => {
                        assert_eq!(old_lines[next], full, "context mismatch");
                        assert_eq!(line.old_line, Some(next + 1));
                        next += 1;
                        if line.tag == Tag::Equal {
                            out.push_str(&full);
                        }
                    }
                    Tag::Insert => out.push_str(&full),
                }
            }
        }
        for l in &old_lines[next..] {
            out.push_str(l);
        }
        out
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Small deterministic PRNG so the property tests need no dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
        fn text(&mut self, pieces: &[&str], max: usize) -> String {
            let len = self.next(max + 1);
            (0..len).map(|_| pieces[self.next(pieces.len())]).collect()
        }
    }

    const PIECES: &[&str] = &[
        "a", "b", "the ", "cat ", "é", "e\u{301}", "☕", "\n", "\r\n", " ", ".", "\r",
    ];

    #[test]
    fn snapshot_unified_prompt_change() {
        let (old, new) = prompt_sets();
        let diffs = diff_file_sets(&old, &new, 3);
        insta::assert_snapshot!(render_unified(&diffs, "v1", "v2", false));
    }

    #[test]
    fn snapshot_unified_colored() {
        let (old, new) = prompt_sets();
        let diffs = diff_file_sets(&old, &new, 3);
        let colored = render_unified(&diffs, "v1", "v2", true);
        // Escape made visible so the snapshot is readable and diffable.
        insta::assert_snapshot!(colored.replace('\x1b', "\\e"));
    }

    #[test]
    fn snapshot_side_by_side() {
        let diff = diff_texts(OLD_PROMPT, NEW_PROMPT, 1);
        let rows = side_by_side(&diff);
        let cell = |l: &Option<NumberedLine>| match l {
            None => format!("{:>3}   {:<30}", "", ""),
            Some(l) => {
                let mark = match l.tag {
                    Tag::Equal => ' ',
                    Tag::Delete => '-',
                    Tag::Insert => '+',
                };
                let text: String = l
                    .spans
                    .iter()
                    .map(|s| {
                        if s.emphasized {
                            format!("«{}»", s.text)
                        } else {
                            s.text.clone()
                        }
                    })
                    .collect();
                format!("{:>3} {mark} {text:<30}", l.number)
            }
        };
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            out.push_str(&format!(
                "{i:>2} h{} {}|{}\n",
                row.hunk,
                cell(&row.left),
                cell(&row.right)
            ));
        }
        out.push_str(&format!("changes at {:?}\n", change_positions(&rows)));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn snapshot_word_summary() {
        let long_old = format!(
            "{} The answer is 6. {}",
            "Lorem ipsum dolor sit amet. ".repeat(5),
            "Consectetur adipiscing elit. ".repeat(5)
        );
        let long_new = long_old.replace("is 6.", "is 7.");
        let out = [
            summarize_word_diff("The answer is 6.", "The answer is 7.", 80),
            summarize_word_diff("line one\nline two", "line one\nline 2", 80),
            summarize_word_diff(&long_old, &long_new, 60),
            summarize_word_diff(&long_old, &long_new, 10),
            summarize_word_diff("same", "same", 80),
        ]
        .join("\n");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn snapshot_hunk_json() {
        let diff = diff_texts(
            "You are terse.\nAnswer in French.\n",
            "You are terse.\nAnswer in German.\n",
            3,
        );
        insta::assert_json_snapshot!(diff.hunks[0]);
    }

    #[test]
    fn json_file_shape_matches_module_doc() {
        let diff = diff_texts(
            "You are terse.\nAnswer in French.\n",
            "You are terse.\nAnswer in German.\n",
            3,
        )
        .with_paths("prompt.txt", "prompt.txt");
        let json = serde_json::to_value(vec![diff]).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            r#"[{"old_path":"prompt.txt","new_path":"prompt.txt","status":"modified",
                "inserted":1,"deleted":1,"hunks":[{"old_start":1,"old_len":2,"new_start":1,"new_len":2,
                "lines":[
                 {"tag":"equal","old_line":1,"new_line":1,"eol":"lf","spans":[{"text":"You are terse.","emphasized":false}]},
                 {"tag":"delete","old_line":2,"new_line":null,"eol":"lf","spans":[{"text":"Answer in ","emphasized":false},{"text":"French","emphasized":true},{"text":".","emphasized":false}]},
                 {"tag":"insert","old_line":null,"new_line":2,"eol":"lf","spans":[{"text":"Answer in ","emphasized":false},{"text":"German","emphasized":true},{"text":".","emphasized":false}]}
                ]}]}]"#,
        )
        .unwrap();
        assert_eq!(json, expected);
    }

    #[test]
    fn identical_inputs_have_no_hunks() {
        let d = diff_texts(OLD_PROMPT, OLD_PROMPT, 3);
        assert!(d.hunks.is_empty());
        assert_eq!(d.status, FileStatus::Unchanged);
        assert!(!d.has_changes());
        assert_eq!(render_unified(&[d], "a", "b", true), "");
        let empty = diff_texts("", "", 3);
        assert!(empty.hunks.is_empty());
        assert!(
            diff_words("same", "same")
                .iter()
                .all(|c| c.tag == Tag::Equal)
        );
        assert!(diff_words("", "").is_empty());
    }

    #[test]
    fn empty_sides() {
        let added = diff_texts("", "a\nb\n", 3);
        assert_eq!(
            render_unified(std::slice::from_ref(&added), "", "", false),
            "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
        assert_eq!((added.inserted, added.deleted), (2, 0));
        let removed = diff_texts("a\n", "", 3);
        assert_eq!(
            render_unified(&[removed], "old", "new", false),
            "--- old\n+++ new\n@@ -1 +0,0 @@\n-a\n"
        );
    }

    #[test]
    fn missing_final_newline() {
        let d = diff_texts("a\nb", "a\nc", 3);
        assert_eq!(
            render_unified(&[d.with_paths("p", "p")], "", "", false),
            "--- a/p\n+++ b/p\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"
        );
        let d = diff_texts("a", "a\n", 3);
        assert_eq!(d.hunks[0].lines[0].eol, Eol::None);
        assert_eq!(d.hunks[0].lines[1].eol, Eol::Lf);
        assert_eq!(
            render_unified(&[d], "", "", false),
            "--- a\n+++ b\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"
        );
    }

    #[test]
    fn crlf_lines_keep_their_endings() {
        let d = diff_texts("one\r\ntwo\r\n", "one\r\nTWO\r\n", 3);
        let lines = &d.hunks[0].lines;
        assert_eq!(lines[1].text(), "two");
        assert_eq!(lines[1].eol, Eol::CrLf);
        assert!(lines[1].spans.iter().all(|s| !s.text.contains('\r')));
        let out = render_unified(&[d], "", "", false);
        assert!(out.ends_with(" one\r\n-two\r\n+TWO\r\n"), "{out:?}");
        // Changing only the line ending is a change too.
        let d = diff_texts("x\r\n", "x\n", 3);
        assert_eq!((d.inserted, d.deleted), (1, 1));
        // A lone CR is content, not a line break (as for patch and git).
        let d = diff_texts("a\rb\n", "a\rc\n", 3);
        assert_eq!(d.hunks[0].lines.len(), 2);
    }

    #[test]
    fn unicode_char_and_word_diffs() {
        let c = diff_chars("café ☕", "cafe ☕!");
        assert_eq!(
            c,
            vec![
                Change {
                    tag: Tag::Equal,
                    text: "caf".into()
                },
                Change {
                    tag: Tag::Delete,
                    text: "é".into()
                },
                Change {
                    tag: Tag::Insert,
                    text: "e".into()
                },
                Change {
                    tag: Tag::Equal,
                    text: " ☕".into()
                },
                Change {
                    tag: Tag::Insert,
                    text: "!".into()
                },
            ]
        );
        // A combining accent stays with its base letter.
        let c = diff_chars("e\u{301}", "e");
        assert_eq!(
            c[0],
            Change {
                tag: Tag::Delete,
                text: "e\u{301}".into()
            }
        );
        let w = diff_words("The answer is 6.", "The answer is 7.");
        assert_eq!(
            w,
            vec![
                Change {
                    tag: Tag::Equal,
                    text: "The answer is ".into()
                },
                Change {
                    tag: Tag::Delete,
                    text: "6".into()
                },
                Change {
                    tag: Tag::Insert,
                    text: "7".into()
                },
                Change {
                    tag: Tag::Equal,
                    text: ".".into()
                },
            ]
        );
        let lines = diff_with_granularity("a\nb\n", "a\nc\n", Granularity::Line);
        assert_eq!(
            lines[1],
            Change {
                tag: Tag::Delete,
                text: "b\n".into()
            }
        );
    }

    #[test]
    fn word_emphasis_on_changed_lines() {
        let d = diff_texts("Answer in French.\n", "Answer in German.\n", 3);
        let del = &d.hunks[0].lines[0];
        assert_eq!(del.tag, Tag::Delete);
        let emph: Vec<_> = del.spans.iter().filter(|s| s.emphasized).collect();
        assert_eq!(emph.len(), 1);
        assert_eq!(emph[0].text, "French");
    }

    #[test]
    fn very_long_lines_are_fast_and_safe() {
        let base: String = (0..20_000).map(|i| format!("w{} ", i % 97)).collect();
        let changed = base.replacen("w5 ", "CHANGED ", 1);
        let d = diff_texts(&base, &changed, 3);
        let emph: Vec<_> = d.hunks[0].lines[0]
            .spans
            .iter()
            .filter(|s| s.emphasized)
            .collect();
        assert_eq!(
            emph.len(),
            1,
            "a one-word change in a long line stays precise"
        );
        // Unrelated long texts: coarse but correct, and quick.
        let mut rng = Lcg(7);
        let a = rng.text(&["x", "y", "z", " "], 60_000);
        let b = rng.text(&["x", "y", "z", " "], 60_000);
        let start = std::time::Instant::now();
        let d = diff_texts(&a, &b, 3);
        assert_eq!(side(&diff_texts(&a, &b, usize::MAX), Tag::Insert), b);
        let c = diff_chars(&a, &b);
        let s = summarize_word_diff(&a, &b, 100);
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
        assert!(d.has_changes());
        let rebuilt_new: String = c
            .iter()
            .filter(|c| c.tag != Tag::Delete)
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(rebuilt_new, b);
        assert!(s.chars().count() <= 100);
    }

    #[test]
    fn context_and_hunk_grouping() {
        let old: String = (1..=30).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=30)
            .map(|i| match i {
                5 => "five\n".to_owned(),
                25 => "twenty-five\n".to_owned(),
                i => format!("{i}\n"),
            })
            .collect();
        let d = diff_texts(&old, &new, 3);
        assert_eq!(d.hunks.len(), 2);
        assert_eq!(d.hunks[0].header(), "@@ -2,7 +2,7 @@");
        assert_eq!(d.hunks[1].header(), "@@ -22,7 +22,7 @@");
        let d0 = diff_texts(&old, &new, 0);
        assert_eq!(d0.hunks[0].header(), "@@ -5 +5 @@");
        let all = diff_texts(&old, &new, usize::MAX);
        assert_eq!(all.hunks.len(), 1);
        assert_eq!(all.hunks[0].header(), "@@ -1,30 +1,30 @@");
        for ctx in [0, 1, 3, 10, usize::MAX] {
            assert_eq!(apply(&old, &diff_texts(&old, &new, ctx)), new);
        }
    }

    #[test]
    fn file_sets_statuses() {
        let old = BTreeMap::from([
            ("gone.txt".to_owned(), "bye\n".to_owned()),
            ("same.txt".to_owned(), "x\n".to_owned()),
        ]);
        let new = BTreeMap::from([
            ("new.txt".to_owned(), "hi\n".to_owned()),
            ("same.txt".to_owned(), "x\n".to_owned()),
        ]);
        let diffs = diff_file_sets(&old, &new, 3);
        let statuses: Vec<_> = diffs
            .iter()
            .map(|d| (d.new_path.as_str(), d.status))
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("gone.txt", FileStatus::Removed),
                ("new.txt", FileStatus::Added)
            ]
        );
        assert_eq!(diff_all_file_sets(&old, &new, 3).len(), 3);
        assert_eq!(
            render_unified(&diffs, "v1", "v2", false),
            "--- a/gone.txt\t(v1)\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n\
             --- /dev/null\n+++ b/new.txt\t(v2)\n@@ -0,0 +1 @@\n+hi\n"
        );
    }

    #[test]
    fn colored_output_strips_back_to_plain() {
        let (old, new) = prompt_sets();
        let diffs = diff_file_sets(&old, &new, 3);
        let plain = render_unified(&diffs, "v1", "v2", false);
        let colored = render_unified(&diffs, "v1", "v2", true);
        assert_ne!(plain, colored);
        assert_eq!(strip_ansi(&colored), plain);
        for (p, c) in plain.lines().zip(colored.lines()) {
            assert_eq!(p.chars().next(), c.chars().next(), "prefix kept: {c:?}");
            if let Some(last) = c.rfind('\x1b') {
                assert!(c[last..].starts_with("\x1b[0m"), "line resets: {c:?}");
            }
        }
    }

    #[test]
    fn side_by_side_pairs_and_change_positions() {
        let d = diff_texts("a\nb\nc\nd\n", "a\nB\nX\nc\nD\n", 3);
        let rows = side_by_side(&d);
        let pairs: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.left.as_ref().map(|l| l.number),
                    r.right.as_ref().map(|l| l.number),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                (Some(1), Some(1)),
                (Some(2), Some(2)),
                (None, Some(3)),
                (Some(3), Some(4)),
                (Some(4), Some(5)),
            ]
        );
        assert_eq!(change_positions(&rows), vec![1, 4]);
        assert!(change_positions(&[]).is_empty());
        // Separate hunks start separate change blocks even when adjacent rows.
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=20)
            .map(|i| match i {
                3 => "x\n".to_owned(),
                18 => "y\n".to_owned(),
                i => format!("{i}\n"),
            })
            .collect();
        let rows = side_by_side(&diff_texts(&old, &new, 0));
        assert_eq!(change_positions(&rows), vec![0, 1]);
    }

    #[test]
    fn summary_respects_max_len() {
        let a = "αβγ ".repeat(50) + "end";
        let b = "αβγ ".repeat(50) + "fin";
        for max in [0, 1, 2, 5, 12, 30, 300] {
            let s = summarize_word_diff(&a, &b, max);
            assert!(s.chars().count() <= max, "{max}: {s}");
        }
        assert_eq!(summarize_word_diff(&a, &b, 20), "… αβγ [-end-]{+fin+}");
        assert_eq!(summarize_word_diff("x\ny", "x\nz", 80), "x\\n[-y-]{+z+}");
        assert_eq!(summarize_word_diff("", "new", 80), "{+new+}");
    }

    #[test]
    fn edit_distance_check_matches_lcs() {
        fn lcs(a: &[u8], b: &[u8]) -> usize {
            let mut dp = vec![vec![0; b.len() + 1]; a.len() + 1];
            for i in 1..=a.len() {
                for j in 1..=b.len() {
                    dp[i][j] = if a[i - 1] == b[j - 1] {
                        dp[i - 1][j - 1] + 1
                    } else {
                        dp[i - 1][j].max(dp[i][j - 1])
                    };
                }
            }
            dp[a.len()][b.len()]
        }
        let mut rng = Lcg(42);
        for _ in 0..400 {
            let a = rng.text(&["a", "b", "c"], 12).into_bytes();
            let b = rng.text(&["a", "b", "c"], 12).into_bytes();
            let d = a.len() + b.len() - 2 * lcs(&a, &b);
            assert!(within_edit_distance(&a, &b, d), "{a:?} {b:?} {d}");
            if d > 0 {
                assert!(!within_edit_distance(&a, &b, d - 1), "{a:?} {b:?} {d}");
            }
        }
    }

    #[test]
    fn random_inputs_roundtrip_without_panics() {
        let mut rng = Lcg(1);
        for _ in 0..500 {
            let old = rng.text(PIECES, 24);
            let new = rng.text(PIECES, 24);
            let full = diff_texts(&old, &new, usize::MAX);
            assert_eq!(side(&full, Tag::Delete), old);
            assert_eq!(side(&full, Tag::Insert), new);
            for ctx in [0, 1, 3] {
                let d = diff_texts(&old, &new, ctx);
                assert_eq!(apply(&old, &d), new, "{old:?} -> {new:?} ctx {ctx}");
                assert_eq!((d.inserted, d.deleted), (full.inserted, full.deleted));
                let rows = side_by_side(&d);
                let _ = change_positions(&rows);
                let _ = render_unified(&[d], "o", "n", true);
            }
            for g in [Granularity::Char, Granularity::Word, Granularity::Line] {
                let c = diff_with_granularity(&old, &new, g);
                let o: String = c
                    .iter()
                    .filter(|c| c.tag != Tag::Insert)
                    .map(|c| c.text.as_str())
                    .collect();
                let n: String = c
                    .iter()
                    .filter(|c| c.tag != Tag::Delete)
                    .map(|c| c.text.as_str())
                    .collect();
                assert_eq!((o, n), (old.clone(), new.clone()));
            }
            let max = rng.next(40);
            assert!(summarize_word_diff(&old, &new, max).chars().count() <= max);
        }
    }

    /// Our plain output must match GNU `diff -u` apart from the header lines
    /// (skipped where `diff` is not installed).
    #[test]
    fn matches_gnu_diff_and_applies_with_patch() {
        let dir = std::env::temp_dir().join(format!("promptdeck-diff-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let cases = [
            (OLD_PROMPT, NEW_PROMPT),
            ("a\nb", "a\nc"),
            ("one\r\ntwo\r\n", "one\r\nTWO\r\n"),
            ("", "x\ny\n"),
            ("x\n", ""),
        ];
        let have = |cmd: &str| {
            std::process::Command::new(cmd)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !have("diff") || !have("patch") {
            eprintln!("diff/patch not installed; skipping");
            return;
        }
        for (i, (old, new)) in cases.iter().enumerate() {
            let (a, b) = (dir.join("a/f.txt"), dir.join("b/f.txt"));
            std::fs::write(&a, old).unwrap();
            std::fs::write(&b, new).unwrap();
            let gnu = std::process::Command::new("diff")
                .arg("-u")
                .arg(&a)
                .arg(&b)
                .output()
                .unwrap();
            let gnu = String::from_utf8(gnu.stdout).unwrap();
            let d = diff_texts(old, new, 3).with_paths("f.txt", "f.txt");
            let ours = render_unified(std::slice::from_ref(&d), "old", "new", false);
            let body = |s: &str| s.split_inclusive('\n').skip(2).collect::<String>();
            assert_eq!(body(&ours), body(&gnu), "case {i}");

            let patch_file = dir.join("p.diff");
            std::fs::write(&patch_file, &ours).unwrap();
            let status = std::process::Command::new("patch")
                .current_dir(&dir)
                .args(["-p1", "-s", "--binary", "-i"])
                .arg(&patch_file)
                .arg("a/f.txt")
                .status()
                .unwrap();
            assert!(status.success(), "case {i}");
            assert_eq!(
                std::fs::read_to_string(&a).unwrap_or_default(),
                *new,
                "case {i}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
