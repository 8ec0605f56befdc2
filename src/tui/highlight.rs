//! Syntax classes for the editor: front matter, Jinja tags, expressions and comments, role
//! markers, and YAML keys of tests files.
//!
//! PURE. The view maps each [`Class`] to a theme slot, so highlighting never names a colour.
//! Jinja constructs may span lines, so the whole document is scanned at once (prompt files are
//! small; a scan is microseconds).

/// What a piece of text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Text,
    /// The `---` lines around front matter.
    FrontMatterFence,
    /// Front matter, and YAML in tests files: the key part.
    YamlKey,
    /// Front matter values.
    FrontMatter,
    JinjaTag,
    JinjaExpr,
    JinjaComment,
    RoleMarker,
}

/// A piece of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub class: Class,
    pub text: String,
}

/// Whether a line holds only a role marker (`system:`, `# User:` ...), as `prompt::roles` splits.
pub fn is_role_marker(line: &str) -> bool {
    let t = line.trim().trim_start_matches('#').trim();
    let Some(name) = t.strip_suffix(':') else {
        return false;
    };
    matches!(
        name.trim().to_ascii_lowercase().as_str(),
        "system" | "user" | "assistant"
    )
}

/// Classes for every line of a `.prompty` file (`prompt: true`) or a YAML tests file.
pub fn highlight(lines: &[String], prompt: bool) -> Vec<Vec<Piece>> {
    if !prompt {
        return lines.iter().map(|l| yaml_line(l)).collect();
    }
    let mut out = Vec::with_capacity(lines.len());
    let mut start = 0;
    if lines.first().is_some_and(|l| l.trim_end() == "---") {
        out.push(vec![piece(Class::FrontMatterFence, &lines[0])]);
        start = 1;
        while start < lines.len() {
            let line = &lines[start];
            start += 1;
            if line.trim_end() == "---" {
                out.push(vec![piece(Class::FrontMatterFence, line)]);
                break;
            }
            out.push(yaml_line(line));
        }
    }
    // Open Jinja construct carried across lines: its class and closing delimiter.
    let mut open: Option<(Class, &'static str)> = None;
    for line in &lines[start.min(lines.len())..] {
        if open.is_none() && is_role_marker(line) {
            out.push(vec![piece(Class::RoleMarker, line)]);
            continue;
        }
        let mut pieces = Vec::new();
        let mut rest = line.as_str();
        while !rest.is_empty() {
            if let Some((class, close)) = open {
                match rest.find(close) {
                    Some(i) => {
                        push(&mut pieces, class, &rest[..i + close.len()]);
                        rest = &rest[i + close.len()..];
                        open = None;
                    }
                    None => {
                        push(&mut pieces, class, rest);
                        rest = "";
                    }
                }
                continue;
            }
            let next = ["{{", "{%", "{#"]
                .iter()
                .filter_map(|d| rest.find(d).map(|i| (i, *d)))
                .min_by_key(|(i, _)| *i);
            match next {
                Some((i, delimiter)) => {
                    push(&mut pieces, Class::Text, &rest[..i]);
                    rest = &rest[i..];
                    open = Some(match delimiter {
                        "{{" => (Class::JinjaExpr, "}}"),
                        "{%" => (Class::JinjaTag, "%}"),
                        _ => (Class::JinjaComment, "#}"),
                    });
                    // Consume the opening delimiter so `{{}}` closes correctly.
                    if let Some((class, _)) = open {
                        push(&mut pieces, class, &rest[..2]);
                    }
                    rest = &rest[2..];
                }
                None => {
                    push(&mut pieces, Class::Text, rest);
                    rest = "";
                }
            }
        }
        out.push(pieces);
    }
    out
}

fn piece(class: Class, text: &str) -> Piece {
    Piece {
        class,
        text: text.to_owned(),
    }
}

/// Appends, merging with the previous piece of the same class.
fn push(pieces: &mut Vec<Piece>, class: Class, text: &str) {
    if text.is_empty() {
        return;
    }
    match pieces.last_mut() {
        Some(last) if last.class == class => last.text.push_str(text),
        _ => pieces.push(piece(class, text)),
    }
}

/// A YAML line: `key:` in key colour, the rest as values; comments as comments.
fn yaml_line(line: &str) -> Vec<Piece> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return vec![piece(Class::JinjaComment, line)];
    }
    let indent = line.len() - trimmed.len();
    let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    let dash = trimmed.len() - body.len();
    let key_end = body
        .find(": ")
        .or_else(|| body.strip_suffix(':').map(str::len))
        .filter(|&i| !body[..i].contains(['"', '\'', '{', '[']));
    let mut pieces = Vec::new();
    match key_end {
        Some(end) => {
            push(&mut pieces, Class::FrontMatter, &line[..indent + dash]);
            push(
                &mut pieces,
                Class::YamlKey,
                &body[..=end.min(body.len() - 1)],
            );
            push(
                &mut pieces,
                Class::FrontMatter,
                &body[(end + 1).min(body.len())..],
            );
        }
        None => push(&mut pieces, Class::FrontMatter, line),
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(text: &str, prompt: bool) -> Vec<Vec<(Class, String)>> {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        highlight(&lines, prompt)
            .into_iter()
            .map(|l| l.into_iter().map(|p| (p.class, p.text)).collect())
            .collect()
    }

    #[test]
    fn prompt_classes() {
        let got = classes(
            "---\nname: x\n---\nsystem:\nHi {{ name }} {# note #}\n{% if a %}\nUser:\n{{ b\n}} end",
            true,
        );
        assert_eq!(got[0], vec![(Class::FrontMatterFence, "---".into())]);
        assert_eq!(
            got[1],
            vec![
                (Class::YamlKey, "name:".into()),
                (Class::FrontMatter, " x".into())
            ]
        );
        assert_eq!(got[3], vec![(Class::RoleMarker, "system:".into())]);
        assert_eq!(
            got[4],
            vec![
                (Class::Text, "Hi ".into()),
                (Class::JinjaExpr, "{{ name }}".into()),
                (Class::Text, " ".into()),
                (Class::JinjaComment, "{# note #}".into())
            ]
        );
        assert_eq!(got[5], vec![(Class::JinjaTag, "{% if a %}".into())]);
        assert_eq!(got[6], vec![(Class::RoleMarker, "User:".into())]);
        assert_eq!(got[7], vec![(Class::JinjaExpr, "{{ b".into())]);
        assert_eq!(
            got[8],
            vec![
                (Class::JinjaExpr, "}}".into()),
                (Class::Text, " end".into())
            ]
        );
    }

    #[test]
    fn every_piece_keeps_the_text() {
        let text = "a {{ {% x #} }} {#\n#}:\n- description: x\n  vars: {a: 1}\n";
        for prompt in [true, false] {
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for (line, pieces) in lines.iter().zip(highlight(&lines, prompt)) {
                let joined: String = pieces.iter().map(|p| p.text.as_str()).collect();
                assert_eq!(&joined, line);
            }
        }
    }

    #[test]
    fn role_markers() {
        for yes in ["system:", "  # Assistant :", "USER:"] {
            assert!(is_role_marker(yes), "{yes}");
        }
        for no in ["system: hi", "users:", ""] {
            assert!(!is_role_marker(no), "{no}");
        }
    }
}
