//! ReAct's text protocol, PURE: reading one model turn (`Thought:`, `Action:`, `Final Answer:`)
//! and the trace the loop keeps.
//!
//! Two action forms are read, so prompts written for either convention work:
//! - `Action: tool[input]` (the shipped `react/tools` prompt, as in the ReAct paper), and
//! - `Action: tool` followed by `Action Input: input` (LangChain's format).
//!
//! Whatever comes after an `Observation:` line the model wrote itself is dropped: observations
//! come from the tools, never from the model's imagination.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// What one model turn asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    Action {
        thought: Option<String>,
        tool: String,
        input: String,
    },
    Final {
        thought: Option<String>,
        answer: String,
    },
    /// Neither an action nor a final answer could be read.
    Invalid { reason: String },
}

/// One step of a ReAct trace, as stored and printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// 1-based.
    pub step: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The tool's result or error, as the model was shown it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_answer: Option<String>,
}

/// The whole loop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub steps: Vec<TraceStep>,
    /// Set when the loop ended without a final answer (step limit, failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Trace {
    /// The trace as readable lines, for `promptdeck run`'s stderr.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            out.push_str(&format!("step {}\n", step.step));
            if let Some(thought) = &step.thought {
                out.push_str(&indent("Thought", thought));
            }
            if let Some(action) = &step.action {
                let input = step.input.as_deref().unwrap_or_default();
                out.push_str(&indent("Action", &format!("{action}[{input}]")));
            }
            if let Some(observation) = &step.observation {
                out.push_str(&indent("Observation", observation));
            }
            if let Some(answer) = &step.final_answer {
                out.push_str(&indent("Final Answer", answer));
            }
        }
        if let Some(stopped) = &self.stopped {
            out.push_str(&format!("stopped: {stopped}\n"));
        }
        out
    }
}

fn indent(label: &str, text: &str) -> String {
    let mut lines = text.lines();
    let mut out = format!("  {label}: {}\n", lines.next().unwrap_or_default());
    for line in lines {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

// Literal patterns: compiling them cannot fail, which the unit tests exercise.
static OBSERVATION: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?mi)^[ \t]*Observation[ \t]*:").expect("valid regex"));
static ACTION: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?mi)^[ \t]*Action[ \t]*(?:\d+[ \t]*)?:[ \t]*(.*)$").expect("valid regex")
});
static ACTION_INPUT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?mi)^[ \t]*Action[ \t]+Input[ \t]*(?:\d+[ \t]*)?:[ \t]*(.*)$")
        .expect("valid regex")
});
static FINAL: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?mi)^[ \t]*Final[ \t]+Answer[ \t]*:[ \t]*").expect("valid regex")
});
static THOUGHT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?mi)^[ \t]*Thought[ \t]*(?:\d+[ \t]*)?:[ \t]*").expect("valid regex")
});
static BRACKETED: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^([A-Za-z0-9_.-]+)[ \t]*\[(.*)\][ \t]*$").expect("valid regex")
});

/// The part of a reply the loop keeps: everything before a line the model started with
/// `Observation:` (a stop sequence normally cuts it there; not every backend honours one).
pub fn keep_until_observation(reply: &str) -> &str {
    match OBSERVATION.find(reply) {
        Some(m) => reply[..m.start()].trim_end(),
        None => reply.trim_end(),
    }
}

/// Reads one model turn. An action that comes before a final answer wins (the model went on to
/// imagine the rest); a final answer alone ends the loop.
pub fn parse_turn(reply: &str) -> Turn {
    let text = keep_until_observation(reply);
    let action = ACTION
        .captures_iter(text)
        .find(|c| !ACTION_INPUT.is_match(c.get(0).map_or("", |m| m.as_str())));
    let final_answer = FINAL.find(text);
    let thought_before = |end: usize| -> Option<String> {
        let head = &text[..end];
        let thought = match THOUGHT.find_iter(head).last() {
            Some(m) => head[m.end()..].trim(),
            None => head.trim(),
        };
        (!thought.is_empty()).then(|| thought.to_owned())
    };
    // An action counts when no final answer comes before it.
    let action = action.filter(|a| {
        final_answer.is_none_or(|f| a.get(0).is_some_and(|whole| whole.start() < f.start()))
    });
    match (action, final_answer) {
        (Some(action), _) => {
            // `get(0)` is the whole match and always exists for a match.
            let whole = action.get(0).map_or(0..0, |m| m.range());
            let value = action.get(1).map_or("", |m| m.as_str()).trim();
            let thought = thought_before(whole.start);
            if let Some(caps) = BRACKETED.captures(value) {
                let tool = caps.get(1).map_or("", |m| m.as_str()).to_owned();
                let input = unquote(caps.get(2).map_or("", |m| m.as_str()));
                return Turn::Action {
                    thought,
                    tool,
                    input,
                };
            }
            let tool = value
                .trim_matches(|c: char| c == '`' || c == '"' || c == '\'')
                .to_owned();
            if tool.is_empty() || tool.contains(char::is_whitespace) {
                return Turn::Invalid {
                    reason: format!(
                        "could not read the action `{value}`; write `Action: tool_name[input]`"
                    ),
                };
            }
            let input = ACTION_INPUT
                .captures(&text[whole.end..])
                .and_then(|c| c.get(1))
                .map(|m| unquote(m.as_str()))
                .unwrap_or_default();
            Turn::Action {
                thought,
                tool,
                input,
            }
        }
        (_, Some(f)) => Turn::Final {
            thought: thought_before(f.start()),
            answer: text[f.end()..].trim().to_owned(),
        },
        (None, None) => Turn::Invalid {
            reason: "no `Action:` or `Final Answer:` line; write `Action: tool_name[input]` or `Final Answer: ...`".to_owned(),
        },
    }
}

fn unquote(input: &str) -> String {
    let input = input.trim();
    for quote in ['"', '\'', '`'] {
        if let Some(inner) = input
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner.trim().to_owned();
        }
    }
    input.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(tool: &str, input: &str, thought: Option<&str>) -> Turn {
        Turn::Action {
            thought: thought.map(str::to_owned),
            tool: tool.to_owned(),
            input: input.to_owned(),
        }
    }

    #[test]
    fn bracketed_actions() {
        assert_eq!(
            parse_turn("Thought: I need to multiply.\nAction: calculator[(12 * 7) + 81]"),
            action("calculator", "(12 * 7) + 81", Some("I need to multiply."))
        );
        assert_eq!(
            parse_turn("Action: search[\"refund policy\"]\n"),
            action("search", "refund policy", None)
        );
        assert_eq!(parse_turn("Action: date[]"), action("date", "", None));
        // Square brackets inside the input stay.
        assert_eq!(
            parse_turn("Action: calculator[max([1, 2])]"),
            action("calculator", "max([1, 2])", None)
        );
    }

    #[test]
    fn langchain_actions() {
        assert_eq!(
            parse_turn("Thought: look it up\nAction: search\nAction Input: \"tax rate\"\n"),
            action("search", "tax rate", Some("look it up"))
        );
        assert_eq!(
            parse_turn("Thought: t\nAction: `date`\n"),
            action("date", "", Some("t"))
        );
    }

    #[test]
    fn final_answers_and_imagined_observations() {
        assert_eq!(
            parse_turn("Thought: I now know the final answer.\nFinal Answer: 434\n"),
            Turn::Final {
                thought: Some("I now know the final answer.".to_owned()),
                answer: "434".to_owned(),
            }
        );
        // The model imagined an observation and a final answer: the action runs instead.
        assert_eq!(
            parse_turn(
                "Thought: compute\nAction: calculator[2+2]\nObservation: 5\nFinal Answer: 5"
            ),
            action("calculator", "2+2", Some("compute"))
        );
        // A final answer written before any action ends the loop.
        assert_eq!(
            parse_turn("Final Answer: Paris\nAction: search[x]"),
            Turn::Final {
                thought: None,
                answer: "Paris\nAction: search[x]".to_owned(),
            }
        );
        assert!(matches!(
            parse_turn("I think the answer is 4."),
            Turn::Invalid { .. }
        ));
        assert!(matches!(
            parse_turn("Action: run the calculator please"),
            Turn::Invalid { .. }
        ));
    }

    #[test]
    fn trace_renders_readably() {
        let trace = Trace {
            steps: vec![
                TraceStep {
                    step: 1,
                    thought: Some("multiply".into()),
                    action: Some("calculator".into()),
                    input: Some("6*7".into()),
                    observation: Some("42".into()),
                    final_answer: None,
                },
                TraceStep {
                    step: 2,
                    thought: None,
                    action: None,
                    input: None,
                    observation: None,
                    final_answer: Some("42".into()),
                },
            ],
            stopped: None,
        };
        assert_eq!(
            trace.render(),
            "step 1\n  Thought: multiply\n  Action: calculator[6*7]\n  Observation: 42\nstep 2\n  Final Answer: 42\n"
        );
    }
}
