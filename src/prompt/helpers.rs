//! Template helpers for prompt authors: `dedent`, `numbered`, `bulleted` and `fewshot`.
//!
//! `tojson`, `indent`, `trim`, `join` and the rest come from minijinja's builtins. Helpers that
//! emit chat turns (`fewshot`) write role markers, which the post-render split turns into messages.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

pub fn register(env: &mut Environment<'_>) {
    env.add_filter("dedent", dedent);
    env.add_filter("numbered", numbered);
    env.add_filter("bulleted", bulleted);
    env.add_function("fewshot", fewshot);
}

/// Removes the indentation common to all non-blank lines, like Python's `textwrap.dedent`.
pub fn dedent(text: String) -> String {
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    text.split('\n')
        .map(|line| {
            if line.trim().is_empty() {
                ""
            } else {
                line.get(indent..).unwrap_or(line)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn items(value: &Value, filter: &str) -> Result<Vec<Value>, Error> {
    if value.kind() == ValueKind::String || value.kind() == ValueKind::Map {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("`{filter}` expects a list, got {}", value.kind()),
        ));
    }
    Ok(value.try_iter()?.collect())
}

/// `["a", "b"] | numbered` gives "1. a\n2. b"; `numbered(start=0)` changes the first number.
pub fn numbered(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let start: i64 = kwargs.get::<Option<i64>>("start")?.unwrap_or(1);
    kwargs.assert_all_used()?;
    let lines: Vec<String> = items(&value, "numbered")?
        .iter()
        .enumerate()
        .map(|(i, item)| format!("{}. {item}", start + i as i64))
        .collect();
    Ok(lines.join("\n"))
}

/// `["a", "b"] | bulleted` gives "- a\n- b"; `bulleted(marker="*")` changes the marker.
pub fn bulleted(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let marker: String = kwargs
        .get::<Option<String>>("marker")?
        .unwrap_or_else(|| "-".to_owned());
    kwargs.assert_all_used()?;
    let lines: Vec<String> = items(&value, "bulleted")?
        .iter()
        .map(|item| format!("{marker} {item}"))
        .collect();
    Ok(lines.join("\n"))
}

/// `fewshot(examples, "input", "output")` emits a user turn and an assistant turn per example.
pub fn fewshot(
    examples: Value,
    input_key: Option<String>,
    output_key: Option<String>,
) -> Result<String, Error> {
    let input_key = input_key.unwrap_or_else(|| "input".to_owned());
    let output_key = output_key.unwrap_or_else(|| "output".to_owned());
    let mut out = String::new();
    for (i, example) in items(&examples, "fewshot")?.iter().enumerate() {
        let field = |key: &str| -> Result<String, Error> {
            let value = example.get_attr(key)?;
            if value.is_undefined() || value.is_none() {
                return Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("fewshot example {} has no `{key}` field", i + 1),
                ));
            }
            Ok(value.to_string())
        };
        let (input, output) = (field(&input_key)?, field(&output_key)?);
        out.push_str(&format!(
            "user:\n{}\nassistant:\n{}\n",
            input.trim(),
            output.trim()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(template: &str, ctx: Value) -> Result<String, Error> {
        let mut env = Environment::new();
        register(&mut env);
        env.render_str(template, ctx)
    }

    #[test]
    fn dedent_removes_common_indentation() {
        assert_eq!(dedent("    a\n      b\n\n    c".to_owned()), "a\n  b\n\nc");
        assert_eq!(dedent("a\n  b".to_owned()), "a\n  b");
    }

    #[test]
    fn numbered_and_bulleted() {
        let ctx = context! { steps => vec!["read", "think"] };
        assert_eq!(
            render("{{ steps | numbered }}", ctx.clone()).unwrap(),
            "1. read\n2. think"
        );
        assert_eq!(
            render("{{ steps | numbered(start=0) }}", ctx.clone()).unwrap(),
            "0. read\n1. think"
        );
        assert_eq!(
            render("{{ steps | bulleted(marker='*') }}", ctx).unwrap(),
            "* read\n* think"
        );
        let err = render("{{ 'abc' | numbered }}", context! {}).unwrap_err();
        assert!(
            err.to_string().contains("`numbered` expects a list"),
            "{err}"
        );
    }

    #[test]
    fn fewshot_emits_turns() {
        let ctx = context! { ex => vec![context!{ text => "great", label => "positive" }] };
        assert_eq!(
            render("{{ fewshot(ex, 'text', 'label') }}", ctx).unwrap(),
            "user:\ngreat\nassistant:\npositive\n"
        );
        let ctx = context! { ex => vec![context!{ text => "great" }] };
        let err = render("{{ fewshot(ex, 'text', 'label') }}", ctx).unwrap_err();
        assert!(
            err.to_string()
                .contains("fewshot example 1 has no `label` field"),
            "{err}"
        );
    }
}
