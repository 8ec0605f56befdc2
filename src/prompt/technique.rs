//! Prompting techniques declared in front matter (`technique:`): what each needs, validated.
//!
//! This module only describes and validates; the run module executes them. Validation that needs
//! the whole prompt library (does the generator prompt exist? is a tool allow-listed in
//! promptdeck.toml?) happens in `check`, which knows the project.

use serde::{Deserialize, Serialize};

/// Built-in ReAct tools that need no allow-listing: they cannot touch anything outside the project.
pub const BUILTIN_TOOLS: &[(&str, &str)] = &[
    (
        "calculator",
        "evaluates an arithmetic expression, e.g. calculator[(3 + 4) * 2]",
    ),
    (
        "search",
        "searches the project's local text files and returns matching lines, e.g. search[refund policy]",
    ),
    (
        "date",
        "returns today's date in ISO 8601 format, e.g. date[]",
    ),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Technique {
    /// Draw several samples and take a majority vote over the extracted answers.
    SelfConsistency {
        samples: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature: Option<f64>,
        extract: Extractor,
        /// What the assertions see: the voted answer (default) or the full text of the first
        /// sample that gave it.
        #[serde(default, skip_serializing_if = "VoteOutput::is_answer")]
        output: VoteOutput,
    },
    /// Stage 1 runs `generator`, whose output becomes variable `variable` of this prompt.
    Metaprompt {
        generator: String,
        #[serde(default = "default_generated_variable")]
        variable: String,
    },
    /// A thought/action/observation loop over declared tools.
    React {
        tools: Vec<String>,
        #[serde(default = "default_max_steps")]
        max_steps: u32,
        /// Folder (relative to the project root) that the `search` tool reads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        search_dir: Option<String>,
    },
    /// Other prompts run first; each output becomes a variable of this prompt.
    Steps { steps: Vec<Step> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub prompt: String,
    pub var: String,
}

/// How the answer is pulled out of each self-consistency sample before voting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Extractor {
    LastNumber,
    OptionLetter,
    JsonField(String),
    /// The first capture group, or the whole match when the pattern has no group.
    Regex(String),
}

/// The output a self-consistency case is graded on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VoteOutput {
    /// The extracted answer that won the vote, e.g. `36`.
    #[default]
    Answer,
    /// The whole text of the first sample whose answer won, reasoning included.
    Sample,
}

impl VoteOutput {
    pub fn is_answer(&self) -> bool {
        *self == VoteOutput::Answer
    }
}

fn default_generated_variable() -> String {
    "generated_prompt".to_owned()
}

fn default_max_steps() -> u32 {
    6
}

impl Technique {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Technique::SelfConsistency { .. } => "self-consistency",
            Technique::Metaprompt { .. } => "metaprompt",
            Technique::React { .. } => "react",
            Technique::Steps { .. } => "steps",
        }
    }

    /// Checks that need nothing but the technique itself.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Technique::SelfConsistency {
                samples,
                temperature,
                extract,
                ..
            } => {
                if !(2..=64).contains(samples) {
                    return Err(format!(
                        "self-consistency needs between 2 and 64 samples, got {samples}"
                    ));
                }
                if let Some(t) = temperature {
                    if !(0.0..=2.0).contains(t) {
                        return Err(format!(
                            "self-consistency temperature must be in [0, 2], got {t}"
                        ));
                    }
                }
                if let Extractor::Regex(pattern) = extract {
                    regex::Regex::new(pattern)
                        .map_err(|e| format!("invalid extract regex: {e}"))?;
                }
                if let Extractor::JsonField(field) = extract {
                    if field.is_empty() {
                        return Err("json-field extractor needs a field name".to_owned());
                    }
                }
                Ok(())
            }
            Technique::Metaprompt {
                generator,
                variable,
            } => {
                valid_variable(variable)?;
                if generator.trim().is_empty() {
                    return Err("metaprompt needs a `generator` prompt".to_owned());
                }
                Ok(())
            }
            Technique::React {
                tools, max_steps, ..
            } => {
                if tools.is_empty() {
                    return Err("react needs at least one tool".to_owned());
                }
                if !(1..=50).contains(max_steps) {
                    return Err(format!(
                        "react max_steps must be between 1 and 50, got {max_steps}"
                    ));
                }
                Ok(())
            }
            Technique::Steps { steps } => {
                if steps.is_empty() {
                    return Err("steps needs at least one step".to_owned());
                }
                let mut seen = std::collections::BTreeSet::new();
                for step in steps {
                    valid_variable(&step.var)?;
                    if !seen.insert(step.var.as_str()) {
                        return Err(format!("two steps write the same variable `{}`", step.var));
                    }
                }
                Ok(())
            }
        }
    }

    /// Other prompts this technique runs, by library name.
    pub fn referenced_prompts(&self) -> Vec<&str> {
        match self {
            Technique::Metaprompt { generator, .. } => vec![generator.as_str()],
            Technique::Steps { steps } => steps.iter().map(|s| s.prompt.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Variables the technique provides to the template, with the values used when a prompt is
    /// only rendered (not run): placeholders that show where an earlier stage's output will go.
    pub fn render_variables(
        &self,
        tool_descriptions: &dyn Fn(&str) -> Option<String>,
    ) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{Value, json};
        let mut vars = serde_json::Map::new();
        match self {
            Technique::Metaprompt {
                generator,
                variable,
            } => {
                vars.insert(
                    variable.clone(),
                    Value::String(format!("<output of {generator}>")),
                );
            }
            Technique::Steps { steps } => {
                for step in steps {
                    vars.insert(
                        step.var.clone(),
                        Value::String(format!("<output of {}>", step.prompt)),
                    );
                }
            }
            Technique::React { tools, .. } => {
                let list = tools
                    .iter()
                    .map(|name| {
                        let description = tool_descriptions(name).unwrap_or_default();
                        json!({"name": name, "description": description})
                    })
                    .collect();
                vars.insert("tools".to_owned(), Value::Array(list));
            }
            Technique::SelfConsistency { .. } => {}
        }
        vars
    }
}

pub fn builtin_tool_description(name: &str) -> Option<String> {
    BUILTIN_TOOLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| (*d).to_owned())
}

fn valid_variable(name: &str) -> Result<(), String> {
    super::front_matter::check_identifier(name, crate::diagnostic::Position::START)
        .map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn technique(text: &str) -> Result<Technique, String> {
        let t: Technique = yaml::parse(text)
            .unwrap()
            .deserialize()
            .map_err(|e| e.message)?;
        t.validate()?;
        Ok(t)
    }

    #[test]
    fn self_consistency_with_each_extractor() {
        for extract in [
            "last-number",
            "option-letter",
            "{json-field: answer}",
            "{regex: 'Answer: (\\d+)'}\noutput: sample",
        ] {
            let t = technique(&format!(
                "kind: self-consistency\nsamples: 5\nextract: {extract}\n"
            ));
            assert!(t.is_ok(), "{extract}: {t:?}");
        }
    }

    #[test]
    fn invalid_techniques_are_explained() {
        assert_eq!(
            technique("kind: self-consistency\nsamples: 1\nextract: last-number\n").unwrap_err(),
            "self-consistency needs between 2 and 64 samples, got 1"
        );
        assert!(
            technique("kind: self-consistency\nsamples: 3\nextract: {regex: '('}\n")
                .unwrap_err()
                .starts_with("invalid extract regex")
        );
        assert!(
            technique("kind: chain\n")
                .unwrap_err()
                .starts_with("unknown variant `chain`")
        );
        assert!(
            technique("kind: react\ntools: [calculator]\nmax_step: 3\n")
                .unwrap_err()
                .starts_with("unknown field `max_step`")
        );
        assert_eq!(
            technique("kind: steps\nsteps: [{prompt: a, var: x}, {prompt: b, var: x}]\n")
                .unwrap_err(),
            "two steps write the same variable `x`"
        );
    }

    #[test]
    fn render_variables_show_placeholders() {
        let t = technique("kind: metaprompt\ngenerator: meta/writer\n").unwrap();
        let vars = t.render_variables(&builtin_tool_description);
        assert_eq!(vars["generated_prompt"], "<output of meta/writer>");
        let t = technique("kind: react\ntools: [calculator, date]\n").unwrap();
        let vars = t.render_variables(&builtin_tool_description);
        assert_eq!(vars["tools"][1]["name"], "date");
    }
}
