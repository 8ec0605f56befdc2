//! Deterministic input perturbations for `compare --perturb`: the same perturbation, seed and
//! variables always give the same result, on any machine, so a robustness number can be
//! reproduced and a perturbed case can be cached like any other. PURE.
//!
//! What each perturbation touches in a case's variables:
//! - text perturbations (typos, case, whitespace) rewrite top-level *string* variables only.
//!   Strings nested in lists or maps (few-shot examples, structured inputs) are left alone, so
//!   a demonstration's expected answer is never corrupted; strings that still start with
//!   `file://` are left alone too, or the file reference would break;
//! - reordering rewrites top-level *lists* with at least two items (few-shot examples).
//!
//! A perturbation that finds nothing to change returns the variables unchanged; the caller
//! compares and skips such cases, because running them again would measure sampling noise and
//! call it robustness.
//!
//! Randomness is a self-contained splitmix64 (no `rand`): its output is fixed by its published
//! definition, so it cannot change under a dependency upgrade. Each variable gets its own stream,
//! seeded from the run seed and the variable's name, so the result does not depend on the order
//! of the variables in the map.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::CompareError;

/// Typo rate when `typos` is given without one.
pub const DEFAULT_TYPO_PERCENT: u8 = 10;

/// One perturbation; its [`name`](Perturbation::name) is what `ResultSample::perturbation`
/// holds, and parses back with `FromStr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perturbation {
    /// Swap two adjacent, different letters in `percent`% of the words (each word is drawn
    /// independently; at least one word when any word can take a typo).
    Typos {
        percent: u8,
    },
    Case(CaseStyle),
    /// Single spaces become double spaces or tabs (some stay), and a trailing newline is added.
    Whitespace,
    /// Reorders few-shot example lists.
    Reorder(ReorderMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseStyle {
    Upper,
    Lower,
    /// The first letter after whitespace (or at the start) upper case, every other lower case.
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReorderMode {
    /// Last example first.
    Reverse,
    /// The first example moves to the end.
    Rotate,
}

const KNOWN: &str = "typos, typos:PERCENT, case-upper, case-lower, case-title, whitespace, reorder-reverse, reorder-rotate";

impl Perturbation {
    /// What `--perturb` applies when no list is given.
    pub fn standard_set() -> Vec<Perturbation> {
        vec![
            Perturbation::Typos {
                percent: DEFAULT_TYPO_PERCENT,
            },
            Perturbation::Case(CaseStyle::Upper),
            Perturbation::Case(CaseStyle::Lower),
            Perturbation::Whitespace,
            Perturbation::Reorder(ReorderMode::Reverse),
        ]
    }

    /// The canonical name: "typos" (default rate) or "typos:25", "case-upper", "whitespace",
    /// "reorder-reverse", ...
    pub fn name(&self) -> String {
        match self {
            Perturbation::Typos { percent } if *percent == DEFAULT_TYPO_PERCENT => "typos".into(),
            Perturbation::Typos { percent } => format!("typos:{percent}"),
            Perturbation::Case(CaseStyle::Upper) => "case-upper".into(),
            Perturbation::Case(CaseStyle::Lower) => "case-lower".into(),
            Perturbation::Case(CaseStyle::Title) => "case-title".into(),
            Perturbation::Whitespace => "whitespace".into(),
            Perturbation::Reorder(ReorderMode::Reverse) => "reorder-reverse".into(),
            Perturbation::Reorder(ReorderMode::Rotate) => "reorder-rotate".into(),
        }
    }

    /// Parses a comma-separated list (`--perturb typos:20,case-upper`); blanks are skipped and
    /// repeats kept once, in first-seen order.
    pub fn parse_list(spec: &str) -> Result<Vec<Perturbation>, CompareError> {
        let mut out: Vec<Perturbation> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p: Perturbation = part.parse()?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Applies the perturbation to a case's variables; see the module docs for what is touched.
    pub fn apply(&self, vars: &Map<String, Value>, seed: u64) -> Map<String, Value> {
        vars.iter()
            .map(|(name, value)| {
                let value = match value {
                    Value::String(s) if !s.starts_with("file://") => {
                        Value::String(self.apply_to_text(s, variable_seed(seed, name)))
                    }
                    Value::Array(items) => Value::Array(self.apply_to_list(items)),
                    other => other.clone(),
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// Applies a text perturbation to one string (reordering leaves text unchanged). Empty
    /// text stays empty.
    pub fn apply_to_text(&self, text: &str, seed: u64) -> String {
        if text.is_empty() {
            return String::new();
        }
        match self {
            Perturbation::Typos { percent } => typos(text, (*percent).min(100), seed),
            Perturbation::Case(CaseStyle::Upper) => text.to_uppercase(),
            Perturbation::Case(CaseStyle::Lower) => text.to_lowercase(),
            Perturbation::Case(CaseStyle::Title) => title_case(text),
            Perturbation::Whitespace => whitespace(text, seed),
            Perturbation::Reorder(_) => text.to_string(),
        }
    }

    /// Applies a reordering to one list (text perturbations leave lists unchanged).
    pub fn apply_to_list(&self, items: &[Value]) -> Vec<Value> {
        let mut items = items.to_vec();
        match self {
            Perturbation::Reorder(ReorderMode::Reverse) => items.reverse(),
            Perturbation::Reorder(ReorderMode::Rotate) if !items.is_empty() => items.rotate_left(1),
            _ => {}
        }
        items
    }
}

impl fmt::Display for Perturbation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Perturbation {
    type Err = CompareError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = s.trim();
        if let Some(rate) = spec.strip_prefix("typos:") {
            let percent = rate
                .trim()
                .trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| CompareError::InvalidPerturbation {
                    spec: spec.to_string(),
                    reason: "the typo rate is a whole percentage from 1 to 100".to_string(),
                })?;
            return Ok(Perturbation::Typos { percent });
        }
        Ok(match spec {
            "typos" => Perturbation::Typos {
                percent: DEFAULT_TYPO_PERCENT,
            },
            "case-upper" => Perturbation::Case(CaseStyle::Upper),
            "case-lower" => Perturbation::Case(CaseStyle::Lower),
            "case-title" => Perturbation::Case(CaseStyle::Title),
            "whitespace" => Perturbation::Whitespace,
            "reorder-reverse" => Perturbation::Reorder(ReorderMode::Reverse),
            "reorder-rotate" => Perturbation::Reorder(ReorderMode::Rotate),
            _ => {
                return Err(CompareError::UnknownPerturbation {
                    name: spec.to_string(),
                    known: KNOWN.to_string(),
                });
            }
        })
    }
}

/// splitmix64 (Steele, Lea, Flood 2014; the reference is Vigna's `splitmix64.c`).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in 0..n (0 when n is 0). The modulo bias is below 2^-40 for the small n used
    /// here, far under anything a typo rate could show.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
}

/// FNV-1a of the name, mixed into the seed: per-variable streams independent of map order.
fn variable_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed ^ h
}

/// Positions i in `word` where swapping i and i+1 changes the word.
fn swappable(word: &[char]) -> Vec<usize> {
    (0..word.len().saturating_sub(1))
        .filter(|&i| word[i] != word[i + 1])
        .collect()
}

fn typos(text: &str, percent: u8, seed: u64) -> String {
    let mut rng = SplitMix64::new(seed);
    let mut chars: Vec<char> = text.chars().collect();
    // Words: maximal runs of letters, as (start, end) char ranges.
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().enumerate() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, chars.len()));
    }
    let eligible: Vec<((usize, usize), Vec<usize>)> = words
        .into_iter()
        .map(|(s, e)| ((s, e), swappable(&chars[s..e])))
        .filter(|(_, positions)| !positions.is_empty())
        .collect();
    if eligible.is_empty() || percent == 0 {
        return text.to_string();
    }
    let mut changed = false;
    // One draw for "this word?" and one for "where?" per word, always both, so the typo in a
    // word does not depend on the draws of earlier words being skipped or not.
    for ((s, _), positions) in &eligible {
        let hit = rng.below(100) < usize::from(percent);
        let at = positions[rng.below(positions.len())]; // below(len) < len, len ≥ 1
        if hit {
            // at + 1 < word length, so both indices are inside the word.
            chars.swap(s + at, s + at + 1);
            changed = true;
        }
    }
    if !changed {
        // A typo perturbation that leaves the text as it was would measure nothing.
        // `eligible` and every `positions` are non-empty (filtered above), and below(n) < n.
        let ((s, _), positions) = &eligible[rng.below(eligible.len())];
        let at = positions[rng.below(positions.len())];
        chars.swap(s + at, s + at + 1);
    }
    chars.into_iter().collect()
}

fn title_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_word_start = true;
    for c in text.chars() {
        if at_word_start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        at_word_start = c.is_whitespace();
    }
    out
}

fn whitespace(text: &str, seed: u64) -> String {
    let mut rng = SplitMix64::new(seed);
    let mut out = String::with_capacity(text.len() + text.len() / 4 + 1);
    for c in text.chars() {
        if c == ' ' {
            out.push_str(match rng.below(3) {
                0 => "  ",
                1 => "\t",
                _ => " ",
            });
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of Vigna's splitmix64.c from state 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(SplitMix64::new(7).below(0), 0);
    }

    #[test]
    fn names_round_trip() {
        let all = [
            Perturbation::Typos { percent: 10 },
            Perturbation::Typos { percent: 35 },
            Perturbation::Case(CaseStyle::Upper),
            Perturbation::Case(CaseStyle::Lower),
            Perturbation::Case(CaseStyle::Title),
            Perturbation::Whitespace,
            Perturbation::Reorder(ReorderMode::Reverse),
            Perturbation::Reorder(ReorderMode::Rotate),
        ];
        for p in all {
            assert_eq!(p.name().parse::<Perturbation>().ok(), Some(p), "{p}");
        }
        assert_eq!(all[1].to_string(), "typos:35");
        assert_eq!(
            "typos:20%".parse::<Perturbation>().ok(),
            Some(Perturbation::Typos { percent: 20 })
        );
    }

    #[test]
    fn bad_names_are_errors() {
        let e = "shuffle".parse::<Perturbation>().unwrap_err().to_string();
        assert!(
            e.starts_with("unknown perturbation `shuffle` (known: typos,"),
            "{e}"
        );
        for bad in ["typos:0", "typos:101", "typos:x", "typos:"] {
            let e = bad.parse::<Perturbation>().unwrap_err().to_string();
            assert!(e.contains("whole percentage"), "{bad}: {e}");
        }
        assert!(Perturbation::parse_list("typos,nope").is_err());
    }

    #[test]
    fn parse_list_dedups_and_skips_blanks() {
        let list = Perturbation::parse_list(" typos , case-upper,,typos").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(Perturbation::parse_list("").unwrap(), []);
    }

    #[test]
    fn typos_are_seeded_and_deterministic() {
        let p = Perturbation::Typos { percent: 50 };
        let text = "The quick brown fox jumps over the lazy dog";
        let a = p.apply_to_text(text, 42);
        assert_eq!(a, p.apply_to_text(text, 42), "same seed, same typos");
        assert_ne!(a, text);
        // Typos only swap letters: same length, same letters, spaces where they were.
        assert_eq!(a.len(), text.len());
        let sorted = |s: &str| {
            let mut c: Vec<char> = s.chars().collect();
            c.sort_unstable();
            c
        };
        assert_eq!(sorted(&a), sorted(text));
        let spaces = |s: &str| s.match_indices(' ').map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(spaces(&a), spaces(text));
        // Another seed gives other typos (for this text and these two seeds).
        assert_ne!(a, p.apply_to_text(text, 43));
        // Pinned output: a change here changes every stored perturbed case.
        assert_eq!(a, "Teh quick brown ofx jupms oevr the lazy dog");
    }

    #[test]
    fn typos_always_change_something_when_they_can() {
        let p = Perturbation::Typos { percent: 1 };
        for seed in 0..50 {
            assert_ne!(p.apply_to_text("hello world", seed), "hello world");
        }
        // Nothing a swap could change: digits, one-letter words, doubled letters.
        assert_eq!(p.apply_to_text("a 12 ee ?", 3), "a 12 ee ?");
        assert_eq!(p.apply_to_text("", 3), "");
        // Non-ASCII letters are whole characters, never split bytes.
        let s = Perturbation::Typos { percent: 100 }.apply_to_text("żółw", 1);
        assert_eq!(s.chars().count(), 4);
    }

    #[test]
    fn case_styles() {
        let t = "hello WORLD, it's\tfine";
        assert_eq!(
            Perturbation::Case(CaseStyle::Upper).apply_to_text(t, 0),
            "HELLO WORLD, IT'S\tFINE"
        );
        assert_eq!(
            Perturbation::Case(CaseStyle::Lower).apply_to_text(t, 0),
            "hello world, it's\tfine"
        );
        assert_eq!(
            Perturbation::Case(CaseStyle::Title).apply_to_text(t, 0),
            "Hello World, It's\tFine"
        );
    }

    #[test]
    fn whitespace_changes() {
        let p = Perturbation::Whitespace;
        let text = "one two three four five six";
        let out = p.apply_to_text(text, 9);
        assert_eq!(out, p.apply_to_text(text, 9));
        assert!(out.ends_with('\n'));
        // Words survive; only the space between them changes.
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
        assert!(out.contains('\t') || out.contains("  "), "{out:?}");
        assert_eq!(out, "one\ttwo\tthree  four  five six\n");
        assert_eq!(p.apply_to_text("x", 0), "x\n");
    }

    #[test]
    fn vars_text_and_lists() {
        let v = vars(json!({
            "question": "what is two plus two",
            "examples": [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}, {"q": "c", "a": "3"}],
            "n": 3,
            "doc": "file://docs/a.txt",
        }));
        let upper = Perturbation::Case(CaseStyle::Upper).apply(&v, 1);
        assert_eq!(upper["question"], "WHAT IS TWO PLUS TWO");
        assert_eq!(
            upper["examples"], v["examples"],
            "nested strings are not rewritten"
        );
        assert_eq!(upper["n"], 3);
        assert_eq!(upper["doc"], "file://docs/a.txt");

        let reversed = Perturbation::Reorder(ReorderMode::Reverse).apply(&v, 1);
        assert_eq!(reversed["examples"][0]["q"], "c");
        assert_eq!(reversed["question"], v["question"]);
        let rotated = Perturbation::Reorder(ReorderMode::Rotate).apply(&v, 1);
        let qs: Vec<&Value> = (0..3).map(|i| &rotated["examples"][i]["q"]).collect();
        assert_eq!(qs, [&json!("b"), &json!("c"), &json!("a")]);

        // Nothing to reorder: unchanged, so the caller can skip the case.
        let plain = vars(json!({"question": "hi"}));
        assert_eq!(
            Perturbation::Reorder(ReorderMode::Reverse).apply(&plain, 0),
            plain
        );
        assert!(
            Perturbation::Reorder(ReorderMode::Rotate)
                .apply_to_list(&[])
                .is_empty()
        );
    }

    #[test]
    fn each_variable_has_its_own_stream() {
        // Same text in two variables: different typos (per-variable seeds), and the result of
        // one variable does not depend on whether the other exists.
        let p = Perturbation::Typos { percent: 30 };
        let text = "several ordinary words here to perturb";
        let both = p.apply(&vars(json!({"a": text, "b": text})), 5);
        let only_b = p.apply(&vars(json!({"b": text})), 5);
        assert_eq!(both["b"], only_b["b"]);
        assert_ne!(both["a"], both["b"]);
    }
}
