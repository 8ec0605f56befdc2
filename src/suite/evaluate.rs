//! Assertion evaluation: checks one model output against one [`Assertion`], scores a test case
//! from its assertion results, and pulls answers out of self-consistency samples for the vote.
//!
//! PURE: no I/O. Model-graded assertions (`llm-rubric`, `model-graded-closedqa`) go through a
//! caller-supplied [`Judge`] (the judge prompts are prompt files, `prompts/_judges/`); this module
//! only reads the verdict.
//!
//! Semantics follow promptfoo's (`src/assertions/*.ts`, `src/matchers.ts`) except where noted on
//! the item concerned. In short:
//! - `not-X` inverts the pass of `X` and reports `1 - score`. A check that cannot run at all
//!   (no judge, no measured latency, an invalid schema, an unreadable verdict) fails whether or
//!   not it is negated, as promptfoo's grader failures do.
//! - Deterministic checks score 1 or 0; `rouge-n`, `similar`, `votes-agree` and `llm-rubric`
//!   report their measured score.
//! - A case's score is the weighted mean of its assertion scores; see [`judge_case`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::assertion::{Assertion, AssertionKind, edit_distance};
use crate::prompt::technique::Extractor;

/// What an assertion is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation<'a> {
    pub output: &'a str,
    pub latency_ms: Option<u64>,
    pub cost: Option<f64>,
    /// Self-consistency: the extracted answers of all samples (for votes-agree); None otherwise.
    /// An empty string stands for a sample whose answer could not be extracted.
    pub votes: Option<&'a [String]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionResult {
    /// The type as written, e.g. "not-contains".
    pub assertion: String,
    pub pass: bool,
    /// Between 0 and 1.
    pub score: f64,
    /// One short sentence for reports.
    pub reason: String,
    pub weight: f64,
    pub metric: Option<String>,
}

/// A judge for model-graded assertions (llm-rubric, model-graded-closedqa): the caller supplies
/// it. The judge's prompt is a versioned prompt file (`prompts/_judges/`), which the caller
/// renders with the request's fields and sends to a configured backend; this module only reads
/// the verdict in the reply.
pub trait Judge {
    /// Grades one output and returns the judge's reply text, or why there is none.
    fn judge(&self, request: &JudgeRequest<'_>) -> Result<String, String>;
}

/// What a judge is asked to grade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeRequest<'a> {
    /// `LlmRubric` or `ModelGradedClosedqa`.
    pub kind: AssertionKind,
    /// The output under test.
    pub output: &'a str,
    /// The rubric (llm-rubric) or criterion (closed QA): the assertion's `value`.
    pub criterion: &'a str,
    /// The assertion's own `provider`, when it names one.
    pub provider: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseVerdict {
    pub pass: bool,
    /// Weighted mean of the assertion scores.
    pub score: f64,
    pub results: Vec<AssertionResult>,
    pub reason: String,
}

/// The outcome of a majority vote over self-consistency samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// The most common answer; None when no sample produced one.
    pub answer: Option<String>,
    /// Each distinct answer with its count, most first; ties keep the order first seen.
    pub distribution: Vec<(String, usize)>,
    /// Votes for the winner divided by all samples, those without an answer included.
    pub agreement: f64,
}

const DEFAULT_LEVENSHTEIN_THRESHOLD: f64 = 5.0;
const DEFAULT_ROUGE_THRESHOLD: f64 = 0.75;
const DEFAULT_SIMILAR_THRESHOLD: f64 = 0.75;
const DEFAULT_VOTES_THRESHOLD: f64 = 0.5;
/// How much of the output a reason quotes.
const QUOTE_CHARS: usize = 80;
/// How much of a judge's or validator's own explanation a reason keeps.
const EXPLANATION_CHARS: usize = 300;
/// Guards score comparisons against float noise (e.g. 0.1 + 0.2 vs 0.3), as promptfoo's
/// `Number.EPSILON` margins do.
const EPSILON: f64 = 1e-9;
/// Caps the candidate start positions tried while looking for JSON in a text, so a huge output
/// full of brackets cannot make the scan quadratic without bound.
const MAX_JSON_ATTEMPTS: usize = 2_000;

/// Checks one assertion against one observation. Never panics; every failure is a result with a
/// reason.
pub fn evaluate(
    assertion: &Assertion,
    observation: &Observation,
    judge: Option<&dyn Judge>,
) -> AssertionResult {
    let (pass, score, reason) = match check(assertion, observation, judge) {
        Outcome::Checked(c) => c.resolve(assertion, observation.output),
        Outcome::Recorded(reason) => (true, 1.0, reason),
        Outcome::Broken(reason) => (false, 0.0, reason),
    };
    AssertionResult {
        assertion: assertion.type_name(),
        pass,
        score: clamp01(score),
        reason,
        weight: assertion.weight,
        metric: assertion.metric.clone(),
    }
}

/// A case passes when its weighted score reaches its threshold, or, without a threshold, when
/// every assertion passes (promptfoo). No assertions: pass with score 1.
///
/// As in promptfoo's `AssertionsResult`: a threshold overrides individual failures; a
/// `weight: 0` assertion adds nothing to the score but, without a threshold, its failure still
/// fails the case; when every weight is 0 the score is 0.
pub fn judge_case(case_threshold: Option<f64>, results: Vec<AssertionResult>) -> CaseVerdict {
    if results.is_empty() {
        return CaseVerdict {
            pass: true,
            score: 1.0,
            results,
            reason: "no assertions".to_owned(),
        };
    }
    let total_weight: f64 = results.iter().map(|r| r.weight).sum();
    let score = if total_weight > 0.0 {
        clamp01(results.iter().map(|r| r.score * r.weight).sum::<f64>() / total_weight)
    } else {
        0.0
    };
    let failed: Vec<&AssertionResult> = results.iter().filter(|r| !r.pass).collect();
    let failures = match failed.len() {
        0 => format!("all {} assertions passed", results.len()),
        n => format!("{n} of {} assertions failed", results.len()),
    };
    let (pass, reason) = match case_threshold {
        Some(threshold) => {
            let pass = score >= threshold - EPSILON;
            let comparison = if pass { "reaches" } else { "is below" };
            (
                pass,
                format!("score {score:.2} {comparison} threshold {threshold} ({failures})"),
            )
        }
        None => match failed.first() {
            None => (true, failures),
            Some(first) => (
                false,
                format!("{failures}; first: {}: {}", first.assertion, first.reason),
            ),
        },
    };
    CaseVerdict {
        pass,
        score,
        results,
        reason,
    }
}

/// Pulls the answer out of one self-consistency sample; None when there is none.
///
/// - `last-number`: the last integer or decimal; thousands commas removed, a leading `-` kept
///   (not when glued to a word or number, as in `10-12`), `+` dropped, a trailing period dropped,
///   and trailing decimal zeros removed so `42.0` and `42` vote together.
/// - `option-letter`: A-E after "answer"/"answer is"/"Answer:" (last such mention; the letter
///   may be in parentheses, and lower case there), else the last standalone capital A-E.
/// - `json-field(name)`: the first JSON object in the text with that top-level field; a string
///   value as is, any other value as compact JSON; `null` counts as no answer.
/// - `regex(pattern)`: the LAST match in the text (answers come at the end of a reasoning
///   chain), its first capture group if that took part, else the whole match.
///
/// Answers are trimmed; an empty one is no answer.
pub fn extract_answer(extractor: &Extractor, text: &str) -> Option<String> {
    let answer = match extractor {
        Extractor::LastNumber => last_number(text),
        Extractor::OptionLetter => option_letter(text),
        Extractor::JsonField(field) => json_field(text, field),
        Extractor::Regex(pattern) => regex_answer(text, pattern),
    }?;
    let answer = answer.trim();
    (!answer.is_empty()).then(|| answer.to_owned())
}

/// Majority vote. Samples without an answer are left out of the distribution but count in the
/// denominator of `agreement`, so unparseable samples lower confidence.
pub fn majority_vote(answers: &[Option<String>]) -> Vote {
    let mut distribution: Vec<(String, usize)> = Vec::new();
    for answer in answers.iter().flatten() {
        match distribution.iter_mut().find(|(seen, _)| seen == answer) {
            Some((_, count)) => *count += 1,
            None => distribution.push((answer.clone(), 1)),
        }
    }
    // A stable sort keeps first-seen order among equal counts.
    distribution.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let winner = distribution.first().map(|(_, count)| *count).unwrap_or(0);
    Vote {
        answer: distribution.first().map(|(answer, _)| answer.clone()),
        agreement: if answers.is_empty() {
            0.0
        } else {
            winner as f64 / answers.len() as f64
        },
        distribution,
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

enum Outcome {
    /// The check ran; `not-` applies.
    Checked(Check),
    /// A metric-only latency/cost assertion: it records a value and always passes.
    Recorded(String),
    /// The check could not run: a failure whatever the negation.
    Broken(String),
}

struct Check {
    /// Whether the un-negated property holds.
    holds: bool,
    /// The un-negated score.
    score: f64,
    text: Text,
}

enum Text {
    /// Phrases about `subject` from which every reason is built, e.g. base `contain "7"`,
    /// third `contains "7"`, third_not `does not contain "7"`.
    Phrase {
        subject: &'static str,
        base: String,
        third: String,
        third_not: String,
        /// A measurement shown in parentheses, e.g. `distance 7`.
        detail: Option<String>,
        /// Quote the output when the assertion fails.
        quote_output: bool,
    },
    /// A judge's verdict, already phrased; `not-` is noted after it.
    Verdict(String),
}

impl Check {
    fn resolve(self, assertion: &Assertion, output: &str) -> (bool, f64, String) {
        let negated = assertion.negated;
        let pass = self.holds != negated;
        let score = if negated {
            1.0 - self.score
        } else {
            self.score
        };
        let reason = match self.text {
            Text::Phrase {
                subject,
                base,
                third,
                third_not,
                detail,
                quote_output,
            } => {
                let mut reason = if pass {
                    let verb = if self.holds { third } else { third_not };
                    format!("{subject} {verb}")
                } else {
                    let not = if negated { "not " } else { "" };
                    format!("expected {subject} {not}to {base}")
                };
                if let Some(detail) = detail {
                    reason.push_str(&format!(" ({detail})"));
                }
                if !pass && quote_output {
                    reason.push_str(&format!(", got {}", quote(output)));
                }
                reason
            }
            Text::Verdict(verdict) if negated => {
                format!("{verdict}; `{}` inverts this", assertion.type_name())
            }
            Text::Verdict(verdict) => verdict,
        };
        (pass, score, reason)
    }
}

/// A phrase-based check on the output.
fn phrase(
    holds: bool,
    base: impl Into<String>,
    third: impl Into<String>,
    third_not: impl Into<String>,
) -> Check {
    Check {
        holds,
        score: if holds { 1.0 } else { 0.0 },
        text: Text::Phrase {
            subject: "output",
            base: base.into(),
            third: third.into(),
            third_not: third_not.into(),
            detail: None,
            quote_output: true,
        },
    }
}

impl Check {
    fn with_score(mut self, score: f64) -> Self {
        self.score = score;
        self
    }

    fn with_detail(mut self, detail: String) -> Self {
        if let Text::Phrase { detail: d, .. } = &mut self.text {
            *d = Some(detail);
        }
        self
    }

    /// For checks whose detail already says what matters, or whose output is not text.
    fn without_quote(mut self) -> Self {
        if let Text::Phrase { quote_output, .. } = &mut self.text {
            *quote_output = false;
        }
        self
    }

    fn about(mut self, about: &'static str) -> Self {
        if let Text::Phrase { subject, .. } = &mut self.text {
            *subject = about;
        }
        self
    }
}

fn check(assertion: &Assertion, observation: &Observation, judge: Option<&dyn Judge>) -> Outcome {
    use AssertionKind::*;
    let output = observation.output;
    let value = assertion.value.as_ref();
    let name = assertion.kind.name();
    // `validate_value` guarantees the shapes below; a hand-built Assertion that breaks them gets
    // a failed result rather than a panic.
    let text_value = || {
        value
            .and_then(scalar_text)
            .ok_or_else(|| format!("`{name}` needs a text `value`"))
    };
    let result: Result<Outcome, String> = (|| {
        Ok(match assertion.kind {
            Equals => Outcome::Checked(equals(value, output)),
            Contains => Outcome::Checked(contains(&text_value()?, output, false)),
            Icontains => Outcome::Checked(contains(&text_value()?, output, true)),
            StartsWith => {
                let expected = text_value()?;
                let q = quote(&expected);
                Outcome::Checked(phrase(
                    output.starts_with(expected.as_str()),
                    format!("start with {q}"),
                    format!("starts with {q}"),
                    format!("does not start with {q}"),
                ))
            }
            ContainsAny | ContainsAll | IcontainsAny | IcontainsAll => {
                let items = list_value(value)
                    .ok_or_else(|| format!("`{name}` needs a list of strings as its `value`"))?;
                let all = matches!(assertion.kind, ContainsAll | IcontainsAll);
                let fold = matches!(assertion.kind, IcontainsAny | IcontainsAll);
                Outcome::Checked(contains_list(&items, output, all, fold))
            }
            Regex => {
                let pattern = match value {
                    Some(Value::String(p)) => p,
                    _ => return Err("`regex` needs a pattern as its `value`".to_owned()),
                };
                let re = super::regex_cache::compile(pattern)
                    .map_err(|_| format!("invalid regex {}", quote(pattern)))?;
                // A pattern is shown as written: Debug-quoting would double its backslashes.
                let shown = shorten(pattern);
                Outcome::Checked(phrase(
                    re.is_match(output),
                    format!("match /{shown}/"),
                    format!("matches /{shown}/"),
                    format!("does not match /{shown}/"),
                ))
            }
            IsJson => is_json(value, output, false)?,
            IsValidJsonSchema => is_json(value, output, true)?,
            ContainsJson => contains_json(value, output)?,
            Levenshtein => Outcome::Checked(levenshtein(
                &text_value()?,
                output,
                assertion.threshold.unwrap_or(DEFAULT_LEVENSHTEIN_THRESHOLD),
            )),
            RougeN => Outcome::Checked(rouge_n(
                &text_value()?,
                output,
                assertion.threshold.unwrap_or(DEFAULT_ROUGE_THRESHOLD),
            )),
            Similar => Outcome::Checked(similar(
                &text_value()?,
                output,
                assertion.threshold.unwrap_or(DEFAULT_SIMILAR_THRESHOLD),
            )),
            WordCount => Outcome::Checked(word_count(value, output)?),
            Latency => measured(
                assertion,
                observation.latency_ms.map(|ms| ms as f64),
                "latency",
                "no latency was measured (a cached response has none)",
                |v| format!("{} ms", number(v)),
            ),
            Cost => measured(
                assertion,
                observation.cost,
                "cost",
                "the backend reported no cost",
                |v| format!("${}", number(v)),
            ),
            VotesAgree => votes_agree(
                observation.votes,
                assertion.threshold.unwrap_or(DEFAULT_VOTES_THRESHOLD),
            )?,
            LlmRubric => llm_rubric(assertion, &text_value()?, output, judge)?,
            ModelGradedClosedqa => closed_qa(assertion, &text_value()?, output, judge)?,
        })
    })();
    result.unwrap_or_else(Outcome::Broken)
}

/// promptfoo: a string value must equal the output exactly (no trimming); an object or array
/// value is compared with the output parsed as JSON (deep equality, `1` equal to `1.0`).
fn equals(value: Option<&Value>, output: &str) -> Check {
    match value {
        Some(expected @ (Value::Object(_) | Value::Array(_) | Value::Null)) => {
            // JSON shown as written, not re-quoted, so its own quotes stay readable.
            let q = clip(&expected.to_string(), QUOTE_CHARS);
            let holds = serde_json::from_str::<Value>(output)
                .is_ok_and(|parsed| json_equal(&parsed, expected));
            phrase(
                holds,
                format!("equal the JSON {q}"),
                format!("equals the JSON {q}"),
                format!("does not equal the JSON {q}"),
            )
        }
        _ => {
            let expected = value.and_then(scalar_text).unwrap_or_default();
            let q = quote(&expected);
            phrase(
                output == expected,
                format!("equal {q}"),
                format!("equals {q}"),
                format!("does not equal {q}"),
            )
        }
    }
}

fn contains(expected: &str, output: &str, fold: bool) -> Check {
    let holds = if fold {
        output.to_lowercase().contains(&expected.to_lowercase())
    } else {
        output.contains(expected)
    };
    let q = quote(expected);
    let how = if fold { " ignoring case" } else { "" };
    phrase(
        holds,
        format!("contain {q}{how}"),
        format!("contains {q}{how}"),
        format!("does not contain {q}{how}"),
    )
}

fn contains_list(items: &[String], output: &str, all: bool, fold: bool) -> Check {
    let haystack = if fold {
        output.to_lowercase()
    } else {
        output.to_owned()
    };
    let (found, missing): (Vec<&String>, Vec<&String>) = items.iter().partition(|item| {
        if fold {
            haystack.contains(&item.to_lowercase())
        } else {
            haystack.contains(item.as_str())
        }
    });
    let list = quote_list(items);
    let how = if fold { " ignoring case" } else { "" };
    if all {
        let check = phrase(
            missing.is_empty(),
            format!("contain all of {list}{how}"),
            format!("contains all of {list}{how}"),
            format!("does not contain all of {list}{how}"),
        );
        if missing.is_empty() {
            check
        } else {
            check.with_detail(format!("missing {}", quote_refs(&missing)))
        }
    } else {
        let check = phrase(
            !found.is_empty(),
            format!("contain any of {list}{how}"),
            format!("contains one of {list}{how}"),
            format!("contains none of {list}{how}"),
        );
        if found.is_empty() {
            check
        } else {
            check.with_detail(format!("found {}", quote_refs(&found)))
        }
    }
}

/// `is-json` (promptfoo: the whole output parses as JSON, any JSON value, optionally valid
/// against a schema) and promptdeck's `is-valid-json-schema` (the same with a schema required).
fn is_json(schema: Option<&Value>, output: &str, schema_required: bool) -> Result<Outcome, String> {
    let schema = match schema {
        Some(s) => Some(Schema::compile(s)?),
        None if schema_required => {
            return Err("`is-valid-json-schema` needs a JSON schema as its `value`".to_owned());
        }
        None => None,
    };
    let parsed = serde_json::from_str::<Value>(output);
    Ok(Outcome::Checked(match (parsed, schema) {
        (Err(e), _) => phrase(false, "be valid JSON", "is valid JSON", "is not valid JSON")
            .with_detail(format!("{e}")),
        (Ok(_), None) => phrase(true, "be valid JSON", "is valid JSON", "is not valid JSON"),
        (Ok(v), Some(schema)) => {
            let errors = schema.errors(&v);
            let check = phrase(
                errors.is_none(),
                "be JSON matching the schema",
                "is JSON matching the schema",
                "is JSON that does not match the schema",
            );
            match errors {
                Some(errors) => check.with_detail(errors).without_quote(),
                None => check,
            }
        }
    }))
}

/// promptfoo: some JSON object inside the output; with a schema, some found JSON must match.
/// promptdeck also accepts arrays: the whole output, a fenced block, or an array found in prose
/// that holds a string, object or array (so citations like `[1]` are not JSON).
fn contains_json(schema: Option<&Value>, output: &str) -> Result<Outcome, String> {
    let schema = schema.map(Schema::compile).transpose()?;
    let found = find_json(output);
    let plain = || phrase(false, "contain JSON", "contains JSON", "contains no JSON");
    let Some(schema) = schema else {
        let check = phrase(
            !found.is_empty(),
            "contain JSON",
            "contains JSON",
            "contains no JSON",
        );
        return Ok(Outcome::Checked(check));
    };
    if found.is_empty() {
        return Ok(Outcome::Checked(plain().with_detail(
            "no JSON found to check against the schema".to_owned(),
        )));
    }
    let mut first_errors = None;
    for value in &found {
        match schema.errors(value) {
            None => {
                return Ok(Outcome::Checked(phrase(
                    true,
                    "contain JSON matching the schema",
                    "contains JSON matching the schema",
                    "contains no JSON matching the schema",
                )));
            }
            Some(errors) => {
                first_errors.get_or_insert(errors);
            }
        }
    }
    let check = phrase(
        false,
        "contain JSON matching the schema",
        "contains JSON matching the schema",
        "contains no JSON matching the schema",
    )
    .without_quote();
    Ok(Outcome::Checked(match first_errors {
        Some(errors) => check.with_detail(errors),
        None => check,
    }))
}

/// promptfoo: edit distance between the whole output and `value`, passing at or under the
/// threshold (default 5). Unlike promptfoo (`threshold || 5`), a threshold of 0 means an exact
/// match, and `not-levenshtein` is inverted like every other type.
fn levenshtein(expected: &str, output: &str, threshold: f64) -> Check {
    let (out_len, exp_len) = (output.chars().count(), expected.chars().count());
    let gap = out_len.abs_diff(exp_len);
    // The distance is at least the length difference; past the threshold the exact figure does
    // not matter, and skipping it keeps a huge output from costing len * len work.
    let (distance, detail) = if gap as f64 > threshold {
        (gap, format!("distance at least {gap}"))
    } else {
        let d = edit_distance(output, expected);
        (d, format!("distance {d}"))
    };
    let q = quote(expected);
    phrase(
        distance as f64 <= threshold,
        format!("be within edit distance {threshold} of {q}"),
        format!("is within edit distance {threshold} of {q}"),
        format!("is not within edit distance {threshold} of {q}"),
    )
    .with_detail(detail)
}

/// ROUGE-1 recall, as js-rouge's `n()` (promptfoo's `rouge-n`) computes by default: of the
/// reference's (`value`'s) unigrams, the share also in the output, counts clipped. Words are
/// lower-cased runs of letters and digits (current promptfoo docs lower-case; js-rouge's
/// tokenizer also counts punctuation marks as tokens, promptdeck does not). Score is the recall;
/// pass when it reaches the threshold (default 0.75).
fn rouge_n(expected: &str, output: &str, threshold: f64) -> Check {
    let reference = words(expected);
    let mut candidate: HashMap<&str, usize> = HashMap::new();
    let output_words = words(output);
    for w in &output_words {
        *candidate.entry(w.as_str()).or_default() += 1;
    }
    let mut matched = 0usize;
    for w in &reference {
        if let Some(count) = candidate.get_mut(w.as_str()) {
            if *count > 0 {
                *count -= 1;
                matched += 1;
            }
        }
    }
    let score = if reference.is_empty() {
        0.0
    } else {
        matched as f64 / reference.len() as f64
    };
    scored(
        "ROUGE-1 recall",
        score,
        threshold,
        &format!("against {}", quote(expected)),
    )
}

/// promptfoo's `similar` compares embeddings; promptdeck has none offline, so this is a
/// LEXICAL similarity, not a semantic one: the cosine similarity of term-frequency vectors of
/// word unigrams and bigrams, after lower-casing and dropping punctuation. Paraphrases with
/// different words score low. Pass when it reaches the threshold (default 0.75).
fn similar(expected: &str, output: &str, threshold: f64) -> Check {
    let score = lexical_similarity(expected, output);
    scored(
        "lexical similarity",
        score,
        threshold,
        &format!("to {}", quote(expected)),
    )
}

fn scored(measure: &str, score: f64, threshold: f64, target: &str) -> Check {
    phrase(
        score >= threshold - EPSILON,
        format!("reach {measure} {threshold} {target}"),
        format!("reaches {measure} {threshold} {target}"),
        format!("stays below {measure} {threshold} {target}"),
    )
    .with_score(score)
    .with_detail(format!("score {score:.2}"))
    .without_quote()
}

/// promptfoo: words are whitespace-separated tokens; `value` is an exact count or an inclusive
/// `{min, max}` range (either bound alone).
fn word_count(value: Option<&Value>, output: &str) -> Result<Check, String> {
    let count = output.split_whitespace().count() as u64;
    let bad =
        || "`word-count` needs a whole number or `{min: N, max: N}` as its `value`".to_owned();
    let (holds, what) = match value {
        Some(Value::Number(n)) => {
            let n = n.as_u64().ok_or_else(bad)?;
            (count == n, format!("exactly {n} words"))
        }
        Some(Value::Object(range)) => {
            let bound = |key: &str| match range.get(key) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(bad),
            };
            let (min, max) = (bound("min")?, bound("max")?);
            let holds = min.is_none_or(|m| count >= m) && max.is_none_or(|m| count <= m);
            let what = match (min, max) {
                (Some(a), Some(b)) => format!("between {a} and {b} words"),
                (Some(a), None) => format!("at least {a} words"),
                (None, Some(b)) => format!("at most {b} words"),
                (None, None) => return Err(bad()),
            };
            (holds, what)
        }
        _ => return Err(bad()),
    };
    Ok(phrase(
        holds,
        format!("have {what}"),
        format!("has {what}"),
        format!("does not have {what}"),
    )
    .with_detail(format!("{count} words"))
    .without_quote())
}

/// `latency` and `cost`: pass when the measured value is at most the threshold. Without a
/// threshold (allowed with a `metric`) the value is only recorded and the assertion passes.
fn measured(
    assertion: &Assertion,
    measured: Option<f64>,
    what: &str,
    missing: &str,
    show: impl Fn(f64) -> String,
) -> Outcome {
    let Some(threshold) = assertion.threshold else {
        let metric = assertion
            .metric
            .as_deref()
            .map(|m| format!(" for metric `{m}`"))
            .unwrap_or_default();
        return Outcome::Recorded(match measured {
            Some(v) => format!("recorded {what} {}{metric}", show(v)),
            None => format!("nothing recorded{metric}: {missing}"),
        });
    };
    let Some(value) = measured else {
        return Outcome::Broken(format!("cannot check {what}: {missing}"));
    };
    let limit = show(threshold);
    Outcome::Checked(
        phrase(
            value <= threshold,
            format!("have {what} at most {limit}"),
            format!("had {what} at most {limit}"),
            format!("had {what} over {limit}"),
        )
        .about("the call")
        .with_detail(show(value))
        .without_quote(),
    )
}

/// promptdeck's `votes-agree`: the share of self-consistency samples that gave the winning
/// answer must reach the threshold (default 0.5). Score is that share.
fn votes_agree(votes: Option<&[String]>, threshold: f64) -> Result<Outcome, String> {
    let votes = votes
        .ok_or("`votes-agree` needs a self-consistency technique: this run has no sample votes")?;
    if votes.is_empty() {
        return Err("`votes-agree` found no samples to compare".to_owned());
    }
    let answers: Vec<Option<String>> = votes
        .iter()
        .map(|v| {
            let v = v.trim();
            (!v.is_empty()).then(|| v.to_owned())
        })
        .collect();
    let vote = majority_vote(&answers);
    let detail = match (&vote.answer, vote.distribution.first()) {
        (Some(answer), Some((_, count))) => format!(
            "{count} of {} samples gave {}, agreement {:.2}",
            votes.len(),
            quote(answer),
            vote.agreement
        ),
        _ => format!("none of {} samples gave an answer", votes.len()),
    };
    let percent = format!("{:.0}%", threshold * 100.0);
    Ok(Outcome::Checked(
        phrase(
            vote.agreement >= threshold - EPSILON,
            format!("agree at least {percent}"),
            format!("agree at least {percent}"),
            format!("agree less than {percent}"),
        )
        .about("the samples")
        .with_score(vote.agreement)
        .with_detail(detail)
        .without_quote(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Model-graded assertions

fn ask(judge: Option<&dyn Judge>, request: &JudgeRequest<'_>) -> Result<String, String> {
    let kind = request.kind.name();
    let judge = judge.ok_or_else(|| {
        format!(
            "`{kind}` needs a judge backend; none is configured (set `judge` under [defaults] in promptdeck.toml)"
        )
    })?;
    let reply = judge
        .judge(request)
        .map_err(|e| format!("the judge failed: {}", clip(&e, EXPLANATION_CHARS)))?;
    if reply.trim().is_empty() {
        return Err("the judge returned an empty reply".to_owned());
    }
    Ok(reply)
}

/// promptfoo's `matchesLlmRubric`: the first JSON object in the reply (one with `pass` or
/// `score` preferred) is the verdict; `pass` missing counts as true, a non-boolean `pass` is
/// true when it reads true/yes/pass/y; a missing or non-numeric `score` follows `pass`. With a
/// threshold, the score must also reach it. Scores are clamped to 0..=1.
fn llm_rubric(
    assertion: &Assertion,
    rubric: &str,
    output: &str,
    judge: Option<&dyn Judge>,
) -> Result<Outcome, String> {
    let reply = ask(
        judge,
        &JudgeRequest {
            kind: AssertionKind::LlmRubric,
            output,
            criterion: rubric,
            provider: assertion.provider.as_deref(),
        },
    )?;
    let verdict = parse_rubric_verdict(&reply)?;
    let mut pass = verdict.pass;
    let mut text = match &verdict.reason {
        Some(reason) => clip(reason, EXPLANATION_CHARS),
        None => "the judge gave no reason".to_owned(),
    };
    if let Some(threshold) = assertion.threshold {
        if verdict.score < threshold - EPSILON {
            if pass {
                text = format!(
                    "score {:.2} is below threshold {threshold}: {text}",
                    verdict.score
                );
            }
            pass = false;
        }
    }
    let prefix = if pass { "judge: pass" } else { "judge: fail" };
    Ok(Outcome::Checked(Check {
        holds: pass,
        score: verdict.score,
        text: Text::Verdict(format!("{prefix} (score {:.2}): {text}", verdict.score)),
    }))
}

struct RubricVerdict {
    pass: bool,
    score: f64,
    reason: Option<String>,
}

fn parse_rubric_verdict(reply: &str) -> Result<RubricVerdict, String> {
    let objects: Vec<Value> = find_json(reply)
        .into_iter()
        .filter(Value::is_object)
        .collect();
    let verdict = objects
        .iter()
        .find(|o| o.get("pass").is_some() || o.get("score").is_some())
        .or(objects.first())
        .ok_or_else(|| {
            format!(
                "could not find a JSON verdict in the judge's reply {}",
                quote(reply)
            )
        })?;
    let pass = match verdict.get("pass") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => truthy(s),
        Some(other) => truthy(&other.to_string()),
    };
    let score = match verdict.get("score") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
    .unwrap_or(if pass { 1.0 } else { 0.0 });
    let reason = match verdict.get("reason") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    };
    Ok(RubricVerdict {
        pass,
        score: clamp01(score),
        reason,
    })
}

fn truthy(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "pass" | "y"
    )
}

/// promptfoo's `matchesClosedQa`: the reply ends in Y (pass) or N (fail). Read robustly: the last
/// word with markdown and punctuation stripped (`**Y**`, `N.`), Yes/No accepted; failing that a
/// JSON object with `pass`. Anything else is an unreadable verdict, a failure even under `not-`.
fn closed_qa(
    assertion: &Assertion,
    criterion: &str,
    output: &str,
    judge: Option<&dyn Judge>,
) -> Result<Outcome, String> {
    let reply = ask(
        judge,
        &JudgeRequest {
            kind: AssertionKind::ModelGradedClosedqa,
            output,
            criterion,
            provider: assertion.provider.as_deref(),
        },
    )?;
    let meets = parse_yes_no(&reply).ok_or_else(|| {
        format!(
            "could not read a Y/N verdict at the end of the judge's reply {}",
            quote(reply.trim_end())
        )
    })?;
    let q = quote(criterion);
    let text = if meets {
        format!("judge: the output meets the criterion {q}")
    } else {
        format!("judge: the output does not meet the criterion {q}")
    };
    Ok(Outcome::Checked(Check {
        holds: meets,
        score: if meets { 1.0 } else { 0.0 },
        text: Text::Verdict(text),
    }))
}

fn parse_yes_no(reply: &str) -> Option<bool> {
    let last = reply
        .split_whitespace()
        .last()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .unwrap_or_default();
    match last.to_ascii_uppercase().as_str() {
        "Y" | "YES" => return Some(true),
        "N" | "NO" => return Some(false),
        _ => {}
    }
    find_json(reply).iter().find_map(|o| match o.get("pass")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(truthy(s)),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A compiled JSON schema. boon validates drafts 4 to 2020-12 (2020-12 when `$schema` is
/// absent) and asserts `format`, as promptfoo's ajv with ajv-formats does.
struct Schema {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

/// Refuses every `$ref` to another document: evaluation is pure, so a schema may not make
/// promptdeck read files or the network.
struct NoLoader;

impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("schemas may not refer to other documents ({url})").into())
    }
}

impl Schema {
    fn compile(value: &Value) -> Result<Schema, String> {
        let schema = match value {
            // A schema written as JSON text (e.g. a quoted YAML scalar).
            Value::String(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| format!("invalid JSON schema: not JSON: {e}"))?,
            other => other.clone(),
        };
        if !(schema.is_object() || schema.is_boolean()) {
            return Err("invalid JSON schema: a schema is an object or a boolean".to_owned());
        }
        const LOCATION: &str = "urn:promptdeck:assertion-schema";
        let mut compiler = boon::Compiler::new();
        compiler.use_loader(Box::new(NoLoader));
        compiler.enable_format_assertions();
        let mut schemas = boon::Schemas::new();
        compiler.add_resource(LOCATION, schema).map_err(|e| {
            format!(
                "invalid JSON schema: {}",
                clip(&e.to_string(), EXPLANATION_CHARS)
            )
        })?;
        let index = compiler
            .compile(LOCATION, &mut schemas)
            .map_err(|e| format!("invalid JSON schema: {}", one_line(&format!("{e:#}"))))?;
        Ok(Schema { schemas, index })
    }

    /// None when `value` is valid, else the validator's complaints on one line.
    fn errors(&self, value: &Value) -> Option<String> {
        // `validate` panics only for an index from another `Schemas`; both come from `compile`.
        match self.schemas.validate(value, self.index) {
            Ok(()) => None,
            Err(e) => {
                let text = e.to_string();
                // The first line names the schema URL, which says nothing to the user.
                let detail: Vec<&str> = text
                    .lines()
                    .skip(1)
                    .map(|line| line.trim().trim_start_matches("- "))
                    .collect();
                let detail = if detail.is_empty() {
                    one_line(&text)
                } else {
                    one_line(&detail.join("; "))
                };
                Some(format!("schema: {detail}"))
            }
        }
    }
}

/// JSON objects and arrays in a text, in order: the whole text if it is one; else the contents
/// of ``` fences that parse; then every object found by scanning (nested ones are part of their
/// parent, not found again), and arrays holding a string, object or array.
fn find_json(text: &str) -> Vec<Value> {
    if let Ok(v @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(text) {
        return vec![v];
    }
    let mut found = Vec::new();
    for block in fenced_blocks(text) {
        if let Ok(v @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(block) {
            found.push(v);
        }
    }
    let bytes = text.as_bytes();
    let mut attempts = 0;
    let mut i = 0;
    while i < bytes.len() {
        // `{` and `[` are ASCII, so `i` is a char boundary whenever `text[i..]` is taken.
        if matches!(bytes[i], b'{' | b'[') {
            attempts += 1;
            if attempts > MAX_JSON_ATTEMPTS {
                break;
            }
            let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
            if let Some(Ok(value)) = stream.next() {
                let keep = match &value {
                    Value::Object(_) => true,
                    Value::Array(items) => items.iter().any(|v| {
                        matches!(v, Value::String(_) | Value::Object(_) | Value::Array(_))
                    }),
                    _ => false,
                };
                if keep {
                    let end = stream.byte_offset().max(1);
                    found.push(value);
                    i += end;
                    continue;
                }
            }
        }
        i += 1;
    }
    found
}

/// The insides of ``` fences, without the info string (`json`, ...).
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // The info string runs to the end of the opening line.
        let body_start = after.find('\n').map_or(after.len(), |n| n + 1);
        let body = &after[body_start..];
        let Some(close) = body.find("```") else { break };
        blocks.push(body[..close].trim());
        rest = &body[close + 3..];
    }
    blocks
}

/// Deep equality with numbers compared by value, as JavaScript's `isDeepStrictEqual` does
/// (serde_json tells `1` from `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Extractors

fn last_number(text: &str) -> Option<String> {
    // ASCII digits only: `\d` would also take other scripts' digits, which do not parse as numbers
    // downstream.
    static NUMBER: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?").ok()
    });
    let re = NUMBER.as_ref()?;
    let m = re.find_iter(text).last()?;
    let mut number = m.as_str();
    if let Some(unsigned) = number.strip_prefix(['-', '+']) {
        // A sign glued to a word or number (`10-12`, `x-3`) is a hyphen, not a sign.
        let glued = text[..m.start()]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        if glued || number.starts_with('+') {
            number = unsigned;
        }
    }
    let mut number = number.replace(',', "");
    if number.contains('.') {
        let trimmed = number.trim_end_matches('0').trim_end_matches('.').len();
        number.truncate(trimmed);
    }
    if number == "-0" {
        number = "0".to_owned();
    }
    Some(number)
}

fn option_letter(text: &str) -> Option<String> {
    static PATTERNS: std::sync::LazyLock<Option<(regex::Regex, regex::Regex)>> =
        std::sync::LazyLock::new(|| {
            let stated = regex::Regex::new(
                r"(?i:\banswer\b)(?:\s+(?i:is))?[\s:*=\-]*(?:\(([A-Ea-e])\)|\b([A-E])\b)",
            )
            .ok()?;
            let standalone = regex::Regex::new(r"\b([A-E])\b").ok()?;
            Some((stated, standalone))
        });
    let (stated, standalone) = PATTERNS.as_ref()?;
    if let Some(caps) = stated.captures_iter(text).last() {
        let letter = caps.get(1).or(caps.get(2))?;
        return Some(letter.as_str().to_ascii_uppercase());
    }
    standalone
        .find_iter(text)
        .last()
        .map(|m| m.as_str().to_owned())
}

fn json_field(text: &str, field: &str) -> Option<String> {
    find_json(text).iter().find_map(|v| match v.get(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

fn regex_answer(text: &str, pattern: &str) -> Option<String> {
    let re = regex::Regex::new(pattern).ok()?;
    let caps = re.captures_iter(text).last()?;
    caps.get(1).or(caps.get(0)).map(|m| m.as_str().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// Lower-cased runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn lexical_similarity(a: &str, b: &str) -> f64 {
    fn features(text: &str) -> HashMap<String, f64> {
        let words = words(text);
        let mut tf = HashMap::new();
        for w in &words {
            *tf.entry(w.clone()).or_insert(0.0) += 1.0;
        }
        // `windows(2)` yields slices of exactly two, so both indexes exist.
        for pair in words.windows(2) {
            *tf.entry(format!("{} {}", pair[0], pair[1])).or_insert(0.0) += 1.0;
        }
        tf
    }
    let (a, b) = (features(a), features(b));
    let norm = |v: &HashMap<String, f64>| v.values().map(|x| x * x).sum::<f64>().sqrt();
    let (na, nb) = (norm(&a), norm(&b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let dot: f64 = a.iter().filter_map(|(k, x)| b.get(k).map(|y| x * y)).sum();
    clamp01(dot / (na * nb))
}

/// `String(v)` for a scalar `value`, as promptfoo compares them.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list `value`, or promptfoo's comma-separated string (`parseCommaSeparatedValues`): fields
/// trimmed, empty ones dropped, double quotes protect commas, `""` or `\"` is a quote inside
/// quotes. promptfoo rejects an unterminated quote; promptdeck takes the rest as the field.
fn list_value(value: Option<&Value>) -> Option<Vec<String>> {
    let items = match value? {
        Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
        Value::String(s) => split_comma_separated(s),
        _ => return None,
    };
    let items: Vec<String> = items;
    (!items.is_empty()).then_some(items)
}

fn split_comma_separated(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '\\' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                ',' => {
                    push_field(&mut fields, &mut field, was_quoted);
                    was_quoted = false;
                }
                '"' if field.trim().is_empty() => {
                    field.clear();
                    quoted = true;
                    was_quoted = true;
                }
                _ => field.push(c),
            }
        }
    }
    push_field(&mut fields, &mut field, was_quoted);
    fields
}

fn push_field(fields: &mut Vec<String>, field: &mut String, was_quoted: bool) {
    // A quoted field keeps its inner spaces; a bare one is trimmed.
    let value = if was_quoted {
        std::mem::take(field).trim_end().to_owned()
    } else {
        std::mem::take(field).trim().to_owned()
    };
    if !value.is_empty() {
        fields.push(value);
    }
}

/// The text in double quotes with escapes, at most [`QUOTE_CHARS`] characters of it.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{:?}", format!("{head}…"))
    } else {
        format!("{head:?}")
    }
}

fn shorten(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn quote_list(items: &[String]) -> String {
    let refs: Vec<&String> = items.iter().collect();
    quote_refs(&refs)
}

fn quote_refs(items: &[&String]) -> String {
    const MAX_ITEMS: usize = 8;
    let mut shown: Vec<String> = items.iter().take(MAX_ITEMS).map(|i| quote(i)).collect();
    if items.len() > MAX_ITEMS {
        shown.push(format!("{} more", items.len() - MAX_ITEMS));
    }
    format!("[{}]", shown.join(", "))
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Whitespace runs (newlines included) collapsed, clipped for a one-line reason.
fn one_line(text: &str) -> String {
    clip(
        &text.split_whitespace().collect::<Vec<_>>().join(" "),
        EXPLANATION_CHARS,
    )
}

/// A measured value for a reason: at most six decimals, trailing zeros dropped, so float noise
/// (`0.30000000000000004`) does not show.
fn number(x: f64) -> String {
    let text = format!("{x:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn assertion(text: &str) -> Assertion {
        let mut warnings = Vec::new();
        crate::suite::assertion::parse(&yaml::parse(text).unwrap(), &mut warnings).unwrap()
    }

    fn on(text: &str) -> Observation<'_> {
        Observation {
            output: text,
            ..Observation::default()
        }
    }

    fn run(yaml: &str, output: &str) -> AssertionResult {
        evaluate(&assertion(yaml), &on(output), None)
    }

    /// Checks `yaml` passes on `good` and fails on `bad`, and that its `not-` form does the
    /// opposite with the complementary score.
    fn both_ways(yaml: &str, good: &str, bad: &str) {
        let negated = yaml.replacen("type: ", "type: not-", 1);
        let pass = run(yaml, good);
        assert!(pass.pass, "{yaml} on {good:?}: {}", pass.reason);
        let fail = run(yaml, bad);
        assert!(!fail.pass, "{yaml} on {bad:?}: {}", fail.reason);
        let not_pass = run(&negated, bad);
        assert!(not_pass.pass, "{negated} on {bad:?}: {}", not_pass.reason);
        assert_eq!(not_pass.score, 1.0 - fail.score);
        let not_fail = run(&negated, good);
        assert!(!not_fail.pass, "{negated} on {good:?}: {}", not_fail.reason);
        assert_eq!(not_fail.score, 1.0 - pass.score);
        assert!(not_fail.reason.contains("not"), "{}", not_fail.reason);
    }

    struct FakeJudge<F: Fn(&JudgeRequest<'_>) -> Result<String, String>>(F);
    impl<F: Fn(&JudgeRequest<'_>) -> Result<String, String>> Judge for FakeJudge<F> {
        fn judge(&self, request: &JudgeRequest<'_>) -> Result<String, String> {
            (self.0)(request)
        }
    }

    fn judged(yaml: &str, output: &str, reply: Result<&str, &str>) -> AssertionResult {
        let reply = reply.map(str::to_owned).map_err(str::to_owned);
        let judge = FakeJudge(move |_: &JudgeRequest<'_>| reply.clone());
        evaluate(&assertion(yaml), &on(output), Some(&judge))
    }

    fn result(pass: bool, score: f64, weight: f64) -> AssertionResult {
        AssertionResult {
            assertion: "contains".to_owned(),
            pass,
            score,
            reason: if pass { "ok" } else { "bad" }.to_owned(),
            weight,
            metric: None,
        }
    }

    #[test]
    fn equals_strings_exactly_and_objects_as_json() {
        both_ways("type: equals\nvalue: '42'\n", "42", "42 ");
        both_ways("type: equals\nvalue: 42\n", "42", "42.0");
        both_ways(
            "type: equals\nvalue: {a: 1, b: [true]}\n",
            "{\"b\": [true], \"a\": 1.0}",
            "{\"a\": 1}",
        );
        assert_eq!(
            run("type: equals\nvalue: {a: 1}\n", "not json").reason,
            "expected output to equal the JSON {\"a\":1}, got \"not json\""
        );
        assert!(run("type: not-equals\nvalue: {a: 1}\n", "not json").pass);
        assert_eq!(
            run("type: equals\nvalue: hi\n", "hello").reason,
            "expected output to equal \"hi\", got \"hello\""
        );
    }

    #[test]
    fn contains_family() {
        both_ways("type: contains\nvalue: '7'\n", "It is 7.", "It is 8.");
        both_ways("type: contains\nvalue: 0\n", "0 items", "none");
        both_ways("type: icontains\nvalue: PARIS\n", "paris, France", "Lyon");
        both_ways("type: starts-with\nvalue: Yes\n", "Yes, indeed", " Yes");
        let r = run("type: contains\nvalue: '7'\n", "The answer is 8");
        assert_eq!(
            r.reason,
            "expected output to contain \"7\", got \"The answer is 8\""
        );
        let r = run("type: not-contains\nvalue: sorry\n", "I am so sorry");
        assert_eq!(
            r.reason,
            "expected output not to contain \"sorry\", got \"I am so sorry\""
        );
        let r = run("type: not-contains\nvalue: sorry\n", "Here you go");
        assert_eq!(r.reason, "output does not contain \"sorry\"");
        assert_eq!(r.assertion, "not-contains");
    }

    #[test]
    fn contains_any_and_all_with_lists_and_comma_strings() {
        both_ways("type: contains-any\nvalue: [cat, dog]\n", "a dog", "a bird");
        both_ways(
            "type: contains-all\nvalue: [cat, dog]\n",
            "cat and dog",
            "cat only",
        );
        both_ways("type: icontains-any\nvalue: 'Cat, DOG'\n", "DOGS", "bird");
        both_ways(
            "type: icontains-all\nvalue: '\"hello, world\", bye'\n",
            "HELLO, WORLD and BYE",
            "hello world bye",
        );
        let r = run("type: contains-all\nvalue: [a, b, c]\n", "a only");
        assert!(r.reason.contains("missing [\"b\", \"c\"]"), "{}", r.reason);
        let r = run("type: contains-any\nvalue: [x, y]\n", "y");
        assert_eq!(
            r.reason,
            "output contains one of [\"x\", \"y\"] (found [\"y\"])"
        );
    }

    #[test]
    fn comma_separated_values() {
        assert_eq!(split_comma_separated("ada, lovelace"), ["ada", "lovelace"]);
        assert_eq!(split_comma_separated(" a ,, b ,"), ["a", "b"]);
        assert_eq!(
            split_comma_separated(r#""x, y", "say ""hi""", "a \"q\"""#),
            ["x, y", "say \"hi\"", "a \"q\""]
        );
        assert_eq!(split_comma_separated("\"open, end"), ["open, end"]);
        assert!(split_comma_separated(" , ").is_empty());
    }

    #[test]
    fn regex_matches_anywhere() {
        both_ways("type: regex\nvalue: '^\\d+$'\n", "123", "12a");
        both_ways(
            "type: regex\nvalue: '(?i)total: \\d+'\n",
            "x\nTOTAL: 9\n",
            "total 9",
        );
        assert_eq!(
            run("type: regex\nvalue: 'a+'\n", "bbb").reason,
            "expected output to match /a+/, got \"bbb\""
        );
    }

    #[test]
    fn is_json_with_and_without_schema() {
        both_ways("type: is-json\n", " {\"a\": 1}\n", "{a: 1}");
        assert!(
            run("type: is-json\n", "42").pass,
            "any JSON value, as JSON.parse"
        );
        assert!(!run("type: is-json\n", "```json\n{}\n```").pass);
        // Declared drafts use boon's built-in metaschemas, not the (refusing) loader.
        let draft7 = "type: is-json\nvalue: {$schema: 'http://json-schema.org/draft-07/schema#', type: object}\n";
        both_ways(draft7, "{}", "[]");
        let draft4 = "type: is-json\nvalue: {$schema: 'http://json-schema.org/draft-04/schema#', type: string}\n";
        both_ways(draft4, "\"s\"", "1");
        let schema = "type: is-json\nvalue: {type: object, required: [name], properties: {name: {type: string}}}\n";
        both_ways(schema, "{\"name\": \"Ada\"}", "{\"name\": 3}");
        let r = run(schema, "{}");
        assert_eq!(
            r.reason,
            "expected output to be JSON matching the schema (schema: at '': missing properties 'name')"
        );
        // A schema given as JSON text.
        let text = "type: is-json\nvalue: '{\"type\": \"array\"}'\n";
        both_ways(text, "[1]", "{}");
    }

    #[test]
    fn is_valid_json_schema_and_format_assertions() {
        let yaml = "type: is-valid-json-schema\nvalue: {type: object, properties: {email: {type: string, format: email}}}\n";
        both_ways(
            yaml,
            "{\"email\": \"a@b.example\"}",
            "{\"email\": \"nope\"}",
        );
        assert!(!run(yaml, "not json").pass);
    }

    #[test]
    fn invalid_or_remote_schemas_fail_even_negated() {
        let bad = "type: not-is-json\nvalue: {type: 12}\n";
        let r = run(bad, "{}");
        assert!(
            !r.pass && r.reason.starts_with("invalid JSON schema"),
            "{}",
            r.reason
        );
        let remote = "type: is-json\nvalue: {$ref: 'file:///etc/passwd'}\n";
        let r = run(remote, "{}");
        assert!(
            !r.pass && r.reason.starts_with("invalid JSON schema"),
            "{}",
            r.reason
        );
        let remote = "type: not-is-json\nvalue: {$ref: 'https://example.com/s.json'}\n";
        assert!(!run(remote, "{}").pass);
    }

    #[test]
    fn contains_json_finds_fenced_and_embedded_json() {
        both_ways(
            "type: contains-json\n",
            "Here:\n```json\n{\"a\": [1, 2]}\n```\nDone.",
            "no json [1] here {oops}",
        );
        assert!(run("type: contains-json\n", "list: [\"a\", \"b\"] ok").pass);
        assert!(run("type: contains-json\n", "```\n[1, 2, 3]\n```").pass);
        assert!(
            run("type: contains-json\n", "[1, 2]").pass,
            "the whole output"
        );
        let schema = "type: contains-json\nvalue: {type: object, required: [ok]}\n";
        both_ways(schema, "{\"x\": 1} then {\"ok\": true}", "only {\"x\": 1}");
        let r = run(schema, "nothing");
        assert!(r.reason.contains("no JSON found"), "{}", r.reason);
    }

    #[test]
    fn find_json_skips_nested_and_broken() {
        let found = find_json("a {\"x\": {\"y\": 1}} b {bad} c {\"z\": \"}\"}");
        assert_eq!(found.len(), 2);
        assert_eq!(found[1]["z"], "}");
        assert!(find_json("").is_empty());
        assert!(find_json("{{{{[[[[").is_empty());
        assert_eq!(
            fenced_blocks("```json\n{}\n``` and ```\n[]\n```"),
            ["{}", "[]"]
        );
        assert!(fenced_blocks("```json {} unterminated").is_empty());
    }

    #[test]
    fn levenshtein_default_and_explicit_thresholds() {
        both_ways(
            "type: levenshtein\nvalue: kitten\n",
            "sitting",
            "kitten and more",
        );
        both_ways(
            "type: levenshtein\nvalue: kitten\nthreshold: 0\n",
            "kitten",
            "kittens",
        );
        let r = run(
            "type: levenshtein\nvalue: kitten\nthreshold: 2\n",
            "sitting",
        );
        assert!(!r.pass);
        assert!(r.reason.contains("(distance 3)"), "{}", r.reason);
        let huge = "x".repeat(200_000);
        let r = run("type: levenshtein\nvalue: kitten\n", &huge);
        assert!(
            !r.pass && r.reason.contains("distance at least"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn rouge_n_is_clipped_unigram_recall() {
        let yaml = "type: rouge-n\nvalue: the cat sat on the mat\n";
        let r = run(yaml, "The cat sat on a mat.");
        // Reference unigrams: the x2, cat, sat, on, mat = 6; matched: the x1, cat, sat, on, mat.
        assert!((r.score - 5.0 / 6.0).abs() < 1e-9, "{}", r.score);
        assert!(r.pass);
        both_ways(yaml, "the cat sat on the mat", "a dog ran");
        let r = run(&format!("{yaml}threshold: 0.9\n"), "The cat sat on a mat.");
        assert!(!r.pass);
        assert!(r.reason.contains("score 0.83"), "{}", r.reason);
        let r = run(
            "type: not-rouge-n\nvalue: the cat sat on the mat\n",
            "the cat",
        );
        assert!(r.pass);
        assert!((r.score - (1.0 - 2.0 / 6.0)).abs() < 1e-9);
    }

    #[test]
    fn similar_is_lexical_cosine() {
        let yaml = "type: similar\nvalue: The quick brown fox jumps\n";
        both_ways(
            yaml,
            "the quick brown fox jumps!",
            "Completely unrelated words here",
        );
        let r = run(yaml, "the quick brown fox jumps!");
        assert!((r.score - 1.0).abs() < 1e-9);
        let partial = lexical_similarity("a b c d", "a b c e");
        // Unigrams a b c shared, bigrams "a b", "b c" shared: dot 5, norms sqrt(7) each.
        assert!((partial - 5.0 / 7.0).abs() < 1e-9, "{partial}");
        assert_eq!(lexical_similarity("", "abc"), 0.0);
        assert_eq!(lexical_similarity("!!!", "..."), 0.0);
    }

    #[test]
    fn word_count_exact_and_ranges() {
        both_ways(
            "type: word-count\nvalue: 3\n",
            " one  two\nthree ",
            "one two",
        );
        both_ways(
            "type: word-count\nvalue: {min: 2, max: 3}\n",
            "a b",
            "a b c d",
        );
        both_ways("type: word-count\nvalue: {min: 2}\n", "a b c d", "a");
        both_ways("type: word-count\nvalue: {max: 1}\n", "", "a b");
        assert_eq!(
            run("type: word-count\nvalue: {min: 2, max: 3}\n", "a").reason,
            "expected output to have between 2 and 3 words (1 words)"
        );
    }

    #[test]
    fn latency_and_cost() {
        let latency = assertion("type: latency\nthreshold: 500\n");
        let fast = Observation {
            latency_ms: Some(420),
            ..on("x")
        };
        let slow = Observation {
            latency_ms: Some(720),
            ..on("x")
        };
        assert!(evaluate(&latency, &fast, None).pass);
        let r = evaluate(&latency, &slow, None);
        assert!(!r.pass);
        assert_eq!(
            r.reason,
            "expected the call to have latency at most 500 ms (720 ms)"
        );
        let not_latency = assertion("type: not-latency\nthreshold: 500\n");
        assert!(evaluate(&not_latency, &slow, None).pass);
        let r = evaluate(&latency, &on("x"), None);
        assert!(
            !r.pass && r.reason.contains("no latency was measured"),
            "{}",
            r.reason
        );
        assert!(
            !evaluate(&not_latency, &on("x"), None).pass,
            "missing is a failure either way"
        );

        let cost = assertion("type: cost\nthreshold: 0.01\n");
        let cheap = Observation {
            cost: Some(0.002),
            ..on("x")
        };
        let dear = Observation {
            cost: Some(0.5),
            ..on("x")
        };
        let r = evaluate(&cost, &cheap, None);
        assert!(r.pass);
        assert_eq!(r.reason, "the call had cost at most $0.01 ($0.002)");
        let noisy = Observation {
            cost: Some(0.1 + 0.2),
            ..on("x")
        };
        assert!(evaluate(&cost, &noisy, None).reason.ends_with("($0.3)"));
        assert!(!evaluate(&cost, &dear, None).pass);
        assert!(!evaluate(&cost, &on("x"), None).pass);
    }

    #[test]
    fn metric_only_assertions_record_and_pass() {
        let cost = assertion("type: cost\nmetric: spend\nweight: 0\n");
        let r = evaluate(
            &cost,
            &Observation {
                cost: Some(0.25),
                ..on("x")
            },
            None,
        );
        assert!(r.pass);
        assert_eq!(r.score, 1.0);
        assert_eq!(r.reason, "recorded cost $0.25 for metric `spend`");
        assert_eq!(r.metric.as_deref(), Some("spend"));
        assert_eq!(r.weight, 0.0);
        let latency = assertion("type: latency\nmetric: speed\n");
        let r = evaluate(&latency, &on("x"), None);
        assert!(r.pass);
        assert!(r.reason.contains("no latency was measured"), "{}", r.reason);
    }

    #[test]
    fn votes_agree() {
        let yaml = assertion("type: votes-agree\n");
        let votes: Vec<String> = ["42", "42", "41", "", "42"].map(String::from).to_vec();
        let obs = Observation {
            votes: Some(&votes),
            ..on("42")
        };
        let r = evaluate(&yaml, &obs, None);
        assert!(r.pass);
        assert!((r.score - 0.6).abs() < 1e-9);
        assert!(
            r.reason.contains("3 of 5 samples gave \"42\""),
            "{}",
            r.reason
        );
        let strict = assertion("type: votes-agree\nthreshold: 0.8\n");
        assert!(!evaluate(&strict, &obs, None).pass);
        let negated = assertion("type: not-votes-agree\nthreshold: 0.8\n");
        assert!(evaluate(&negated, &obs, None).pass);
        let r = evaluate(&yaml, &on("42"), None);
        assert!(!r.pass);
        assert!(
            r.reason.contains("needs a self-consistency technique"),
            "{}",
            r.reason
        );
        let none: Vec<String> = vec![String::new(); 3];
        let r = evaluate(
            &yaml,
            &Observation {
                votes: Some(&none),
                ..on("")
            },
            None,
        );
        assert!(
            !r.pass && r.reason.contains("none of 3 samples"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn llm_rubric_builds_the_prompt_and_parses_verdicts() {
        let seen = std::cell::RefCell::new((String::new(), String::new()));
        let judge = FakeJudge(|request: &JudgeRequest<'_>| {
            assert_eq!(request.kind, AssertionKind::LlmRubric);
            *seen.borrow_mut() = (request.output.to_owned(), request.criterion.to_owned());
            Ok(r#"{"reason": "concise", "pass": true, "score": 0.9}"#.to_owned())
        });
        let a = assertion("type: llm-rubric\nvalue: Is concise\n");
        let r = evaluate(&a, &on("Short answer."), Some(&judge));
        assert!(r.pass);
        assert_eq!(r.score, 0.9);
        assert_eq!(r.reason, "judge: pass (score 0.90): concise");
        let (output, rubric) = seen.into_inner();
        assert_eq!(output, "Short answer.");
        assert_eq!(rubric, "Is concise");

        let prose =
            "Let me think.\n```json\n{\"reason\": \"rude\", \"pass\": false, \"score\": 0.1}\n```";
        let r = judged("type: llm-rubric\nvalue: polite\n", "x", Ok(prose));
        assert!(!r.pass);
        assert_eq!(r.score, 0.1);
        let r = judged("type: not-llm-rubric\nvalue: polite\n", "x", Ok(prose));
        assert!(r.pass);
        assert!((r.score - 0.9).abs() < 1e-9);
        assert!(
            r.reason.contains("`not-llm-rubric` inverts this"),
            "{}",
            r.reason
        );

        // Missing pass counts as true; string pass and score are read; scores are clamped.
        let r = judged(
            "type: llm-rubric\nvalue: v\n",
            "x",
            Ok(r#"{"score": "0.7"}"#),
        );
        assert!(r.pass && r.score == 0.7 && r.reason.contains("no reason"));
        let r = judged(
            "type: llm-rubric\nvalue: v\n",
            "x",
            Ok(r#"{"pass": "Yes", "score": 7}"#),
        );
        assert!(r.pass && r.score == 1.0);
        let r = judged("type: llm-rubric\nvalue: v\n", "x", Ok(r#"{"pass": "no"}"#));
        assert!(!r.pass && r.score == 0.0);
        // The verdict object is preferred over other JSON in the reply.
        let r = judged(
            "type: llm-rubric\nvalue: v\n",
            "x",
            Ok(r#"The output {"a": 1} is fine. {"pass": false, "reason": "no"}"#),
        );
        assert!(!r.pass);
    }

    #[test]
    fn llm_rubric_threshold() {
        let reply = Ok(r#"{"reason": "meh", "pass": true, "score": 0.6}"#);
        let r = judged("type: llm-rubric\nvalue: v\nthreshold: 0.8\n", "x", reply);
        assert!(!r.pass);
        assert!(r.reason.contains("below threshold 0.8"), "{}", r.reason);
        assert!(judged("type: llm-rubric\nvalue: v\nthreshold: 0.5\n", "x", reply).pass);
    }

    #[test]
    fn judge_failures_fail_even_negated() {
        for yaml in [
            "type: llm-rubric\nvalue: v\n",
            "type: not-llm-rubric\nvalue: v\n",
            "type: model-graded-closedqa\nvalue: v\n",
            "type: not-model-graded-closedqa\nvalue: v\n",
        ] {
            let r = run(yaml, "x");
            assert!(!r.pass && r.score == 0.0);
            assert!(r.reason.contains("needs a judge backend"), "{}", r.reason);
            let r = judged(yaml, "x", Err("HTTP 500"));
            assert!(!r.pass);
            assert_eq!(r.reason, "the judge failed: HTTP 500");
            let r = judged(yaml, "x", Ok("   "));
            assert!(!r.pass && r.reason.contains("empty reply"), "{}", r.reason);
            let r = judged(yaml, "x", Ok("I cannot decide, sorry maybe"));
            assert!(!r.pass);
            assert!(r.reason.starts_with("could not"), "{}", r.reason);
        }
    }

    #[test]
    fn closed_qa_reads_the_last_letter() {
        let seen = std::cell::RefCell::new(String::new());
        let judge = FakeJudge(|request: &JudgeRequest<'_>| {
            assert_eq!(request.kind, AssertionKind::ModelGradedClosedqa);
            *seen.borrow_mut() = format!("{} / {}", request.output, request.criterion);
            Ok("foo \n \n bar\n Y Y \n".to_owned())
        });
        let a = assertion("type: model-graded-closedqa\nvalue: Is not apologetic\n");
        let r = evaluate(&a, &on("Here it is."), Some(&judge));
        assert!(r.pass && r.score == 1.0);
        assert_eq!(
            r.reason,
            "judge: the output meets the criterion \"Is not apologetic\""
        );
        assert_eq!(*seen.borrow(), "Here it is. / Is not apologetic");

        let yaml = "type: model-graded-closedqa\nvalue: c\n";
        assert!(!judged(yaml, "x", Ok("Reasoning...\nN\nN")).pass);
        assert!(judged(yaml, "x", Ok("Reasoning...\n**Y**")).pass);
        assert!(judged(yaml, "x", Ok("So: Yes.")).pass);
        assert!(!judged(yaml, "x", Ok("verdict: no")).pass);
        assert!(judged(yaml, "x", Ok("{\"pass\": true}")).pass);
        let r = judged("type: not-model-graded-closedqa\nvalue: c\n", "x", Ok("N"));
        assert!(r.pass && r.score == 1.0);
    }

    #[test]
    fn case_scoring_weights_and_thresholds() {
        // Weights 2 and 1, the weight-2 assertion passes: 2/3.
        let results = || vec![result(true, 1.0, 2.0), result(false, 0.0, 1.0)];
        let v = judge_case(Some(0.6), results());
        assert!(v.pass);
        assert!((v.score - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            v.reason,
            "score 0.67 reaches threshold 0.6 (1 of 2 assertions failed)"
        );
        let v = judge_case(Some(0.7), results());
        assert!(!v.pass);
        assert_eq!(
            v.reason,
            "score 0.67 is below threshold 0.7 (1 of 2 assertions failed)"
        );
        let v = judge_case(None, results());
        assert!(!v.pass);
        assert_eq!(v.reason, "1 of 2 assertions failed; first: contains: bad");
        // promptfoo docs: equals (w 2) fails, contains (w 1) passes -> 0.33.
        let docs = || vec![result(false, 0.0, 2.0), result(true, 1.0, 1.0)];
        assert!(!judge_case(Some(0.5), docs()).pass);
        assert!(judge_case(Some(0.2), docs()).pass);
        assert!(judge_case(Some(0.0), docs()).pass);
    }

    #[test]
    fn case_edge_cases() {
        let v = judge_case(None, Vec::new());
        assert!(v.pass && v.score == 1.0 && v.reason == "no assertions");
        let v = judge_case(Some(0.9), Vec::new());
        assert!(v.pass);
        let v = judge_case(None, vec![result(true, 1.0, 1.0), result(true, 0.8, 1.0)]);
        assert!(v.pass && (v.score - 0.9).abs() < 1e-9);
        assert_eq!(v.reason, "all 2 assertions passed");
        // Weight 0 adds nothing to the score, but its failure still fails a case without a
        // threshold (promptfoo's AssertionsResult).
        let v = judge_case(None, vec![result(true, 1.0, 1.0), result(false, 0.0, 0.0)]);
        assert!(!v.pass && v.score == 1.0);
        let v = judge_case(None, vec![result(true, 1.0, 0.0)]);
        assert!(v.pass && v.score == 0.0);
        // Float noise does not flip a threshold.
        let v = judge_case(
            Some(0.3),
            vec![
                result(true, 0.1, 1.0),
                result(true, 0.2, 1.0),
                result(true, 0.6, 1.0),
            ],
        );
        assert!(v.pass, "{}", v.score);
    }

    #[test]
    fn last_number_extractor() {
        let x = |t: &str| extract_answer(&Extractor::LastNumber, t);
        assert_eq!(x("So 3 + 4 = 7."), Some("7".to_owned()));
        assert_eq!(
            x("Total: 1,234,567.50 dollars"),
            Some("1234567.5".to_owned())
        );
        assert_eq!(x("It dropped to -3.25"), Some("-3.25".to_owned()));
        assert_eq!(x("pages 10-12"), Some("12".to_owned()));
        assert_eq!(x("answer: +5"), Some("5".to_owned()));
        assert_eq!(x("42.0"), Some("42".to_owned()));
        assert_eq!(x("-0.0"), Some("0".to_owned()));
        assert_eq!(x("1,2,3"), Some("3".to_owned()));
        assert_eq!(x("The answer is 42."), Some("42".to_owned()));
        assert_eq!(x("no digits"), None);
        assert_eq!(x(""), None);
        assert_eq!(x("١٢٣ is not ASCII"), None);
    }

    #[test]
    fn option_letter_extractor() {
        let x = |t: &str| extract_answer(&Extractor::OptionLetter, t);
        assert_eq!(
            x("A is wrong, B too. The answer is (C)."),
            Some("C".to_owned())
        );
        assert_eq!(x("Answer: D"), Some("D".to_owned()));
        assert_eq!(x("**Final answer:** (b)"), Some("B".to_owned()));
        assert_eq!(
            x("The answer is a bit unclear; I pick E"),
            Some("E".to_owned())
        );
        assert_eq!(x("A good choice is B"), Some("B".to_owned()));
        assert_eq!(x("Answer: B. Wait, answer: A"), Some("A".to_owned()));
        assert_eq!(x("nothing here, F or G"), None);
        assert_eq!(x("ABC"), None);
    }

    #[test]
    fn json_field_extractor() {
        let x = |t: &str, f: &str| extract_answer(&Extractor::JsonField(f.to_owned()), t);
        assert_eq!(
            x("Thinking... {\"answer\": \" Paris \"} done", "answer"),
            Some("Paris".to_owned())
        );
        assert_eq!(
            x("{\"other\": 1} then {\"answer\": 42}", "answer"),
            Some("42".to_owned())
        );
        assert_eq!(
            x("{\"answer\": [1, 2]}", "answer"),
            Some("[1,2]".to_owned())
        );
        assert_eq!(x("{\"answer\": null}", "answer"), None);
        assert_eq!(
            x("{\"outer\": {\"answer\": 1}}", "answer"),
            None,
            "top level only"
        );
        assert_eq!(x("no json", "answer"), None);
    }

    #[test]
    fn regex_extractor_takes_the_last_match() {
        let x = |t: &str, p: &str| extract_answer(&Extractor::Regex(p.to_owned()), t);
        assert_eq!(
            x("Answer: 1 ... Answer: 2", r"Answer: (\d+)"),
            Some("2".to_owned())
        );
        assert_eq!(x("x=5 y=6", r"y=\d"), Some("y=6".to_owned()));
        assert_eq!(
            x("ab", r"a(x)?b"),
            Some("ab".to_owned()),
            "group did not take part"
        );
        assert_eq!(x("nothing", r"\d+"), None);
        assert_eq!(x("x", r"("), None, "invalid pattern");
        assert_eq!(x("a  b", r"a(\s*)b"), None, "blank answers are none");
    }

    #[test]
    fn majority_vote_ties_and_missing() {
        let v = |xs: &[Option<&str>]| {
            majority_vote(&xs.iter().map(|x| x.map(String::from)).collect::<Vec<_>>())
        };
        let vote = v(&[Some("B"), Some("A"), Some("A"), Some("B"), None]);
        assert_eq!(
            vote.answer.as_deref(),
            Some("B"),
            "ties go to the first seen"
        );
        assert_eq!(
            vote.distribution,
            [("B".to_owned(), 2), ("A".to_owned(), 2)]
        );
        assert!((vote.agreement - 0.4).abs() < 1e-9);
        let vote = v(&[Some("7"), Some("8"), Some("8")]);
        assert_eq!(vote.answer.as_deref(), Some("8"));
        assert_eq!(vote.distribution[0], ("8".to_owned(), 2));
        let vote = v(&[None, None]);
        assert_eq!(vote.answer, None);
        assert!(vote.distribution.is_empty());
        assert_eq!(vote.agreement, 0.0);
        assert_eq!(v(&[]).agreement, 0.0);
    }

    #[test]
    fn reasons_quote_at_most_80_chars() {
        let long = "é".repeat(500);
        let r = run("type: contains\nvalue: zzz\n", &long);
        let quoted = r.reason.split("got ").nth(1).unwrap();
        assert_eq!(quoted.chars().count(), 80 + 3, "{quoted}");
        assert!(quoted.ends_with("…\""));
        assert_eq!(quote("a\nb\"c"), r#""a\nb\"c""#);
    }

    #[test]
    fn no_panics_on_odd_outputs() {
        let huge = format!("{}{}", "{[\"".repeat(20_000), "}".repeat(10));
        let odd = [
            "",
            "\u{0}",
            "\u{feff}🙂👩‍👩‍👧\u{200d}\u{301}",
            "```",
            "```json\n",
            "{\"a\":",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            huge.as_str(),
        ];
        let yamls = [
            "type: equals\nvalue: x\n",
            "type: equals\nvalue: {a: 1}\n",
            "type: icontains\nvalue: İ\n",
            "type: contains-any\nvalue: [a, b]\n",
            "type: regex\nvalue: '\\w+'\n",
            "type: is-json\n",
            "type: contains-json\n",
            "type: contains-json\nvalue: {type: object}\n",
            "type: is-valid-json-schema\nvalue: {type: object}\n",
            "type: levenshtein\nvalue: abc\n",
            "type: rouge-n\nvalue: abc\n",
            "type: similar\nvalue: abc\n",
            "type: word-count\nvalue: 2\n",
            "type: llm-rubric\nvalue: x\n",
        ];
        for output in odd {
            for yaml in yamls {
                let r = run(yaml, output);
                assert!((0.0..=1.0).contains(&r.score), "{yaml}");
                assert!(!r.reason.is_empty());
            }
            for extractor in [
                Extractor::LastNumber,
                Extractor::OptionLetter,
                Extractor::JsonField("a".to_owned()),
                Extractor::Regex(r"(\d)".to_owned()),
            ] {
                let _ = extract_answer(&extractor, output);
            }
            let judge = FakeJudge(|_: &JudgeRequest<'_>| Ok(output.to_owned()));
            let a = assertion("type: llm-rubric\nvalue: x\n");
            assert!(!evaluate(&a, &on("x"), Some(&judge)).pass || output.contains('{'));
        }
    }

    #[test]
    fn hand_built_assertions_with_wrong_shapes_do_not_panic() {
        let mut a = assertion("type: contains\nvalue: x\n");
        a.value = Some(serde_json::json!({"not": "text"}));
        let r = evaluate(&a, &on("x"), None);
        assert!(
            !r.pass && r.reason.contains("needs a text `value`"),
            "{}",
            r.reason
        );
        a.kind = AssertionKind::Regex;
        a.value = Some(Value::String("(".to_owned()));
        assert!(!evaluate(&a, &on("x"), None).pass);
        a.kind = AssertionKind::WordCount;
        a.value = Some(serde_json::json!({"min": -1}));
        assert!(!evaluate(&a, &on("x"), None).pass);
        a.kind = AssertionKind::ContainsAll;
        a.value = None;
        assert!(!evaluate(&a, &on("x"), None).pass);
        a.kind = AssertionKind::IsValidJsonSchema;
        assert!(!evaluate(&a, &on("{}"), None).pass);
    }
}
