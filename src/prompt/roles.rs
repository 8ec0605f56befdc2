//! Splitting rendered text into chat messages at role-marker lines.
//!
//! The split happens after rendering, so a template loop can emit few-shot turns. A marker is a
//! line holding only `system:`, `user:` or `assistant:` (any case, an optional leading `#`,
//! surrounding spaces allowed), the form Prompty uses.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// A message that rendered to nothing and was dropped; `index` counts markers from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedMessage {
    pub index: usize,
    pub role: Role,
}

static MARKER: LazyLock<regex::Regex> = LazyLock::new(|| {
    // A literal pattern: compiling it cannot fail, which the unit tests exercise.
    regex::Regex::new(r"(?i)^[ \t]*#?[ \t]*(system|user|assistant)[ \t]*:[ \t]*$")
        .expect("valid regex")
});

/// Whether `line` is a role marker, i.e. would start a new message after rendering. Used to
/// neutralise untrusted text (a generated prompt, a model output sent to a judge).
pub fn is_role_marker(line: &str) -> bool {
    marker_role(line).is_some()
}

pub fn marker_role(line: &str) -> Option<Role> {
    let caps = MARKER.captures(line.trim_end_matches('\r'))?;
    match caps.get(1)?.as_str().to_ascii_lowercase().as_str() {
        "system" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

/// Splits rendered text into messages. Text before the first marker becomes a user message when
/// it is not blank (a body with no marker at all is one user message). Message contents are
/// trimmed; empty ones are dropped and returned so the caller can warn.
pub fn split_messages(text: &str) -> (Vec<Message>, Vec<DroppedMessage>) {
    let mut messages = Vec::new();
    let mut dropped = Vec::new();
    let mut current: Option<(usize, Role)> = None;
    let mut buffer: Vec<&str> = Vec::new();
    let mut markers = 0;

    let mut flush = |current: Option<(usize, Role)>, buffer: &mut Vec<&str>| {
        let content = buffer.join("\n").trim().to_owned();
        buffer.clear();
        match current {
            Some((index, role)) if content.is_empty() => {
                dropped.push(DroppedMessage { index, role })
            }
            Some((_, role)) => messages.push(Message { role, content }),
            None if content.is_empty() => {}
            None => messages.push(Message {
                role: Role::User,
                content,
            }),
        }
    };

    for line in text.split('\n') {
        if let Some(role) = marker_role(line) {
            flush(current, &mut buffer);
            markers += 1;
            current = Some((markers, role));
        } else {
            buffer.push(line.trim_end_matches('\r'));
        }
    }
    flush(current, &mut buffer);
    (messages, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(messages: &[Message]) -> Vec<(&str, &str)> {
        messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect()
    }

    #[test]
    fn no_marker_is_one_user_message() {
        let (messages, dropped) = split_messages("\n  Tell me a joke.\n\n");
        assert_eq!(roles(&messages), vec![("user", "Tell me a joke.")]);
        assert!(dropped.is_empty());
    }

    #[test]
    fn marker_variants() {
        let text = "SYSTEM:\nbe brief\n# user:  \nhi\r\n  Assistant :\nhello\n#User:\nbye";
        let (messages, _) = split_messages(text);
        assert_eq!(
            roles(&messages),
            vec![
                ("system", "be brief"),
                ("user", "hi"),
                ("assistant", "hello"),
                ("user", "bye")
            ]
        );
    }

    #[test]
    fn markers_need_their_own_line() {
        let (messages, _) = split_messages("user: what does system: mean?\nuser:x");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].content, "user: what does system: mean?\nuser:x");
    }

    #[test]
    fn empty_messages_are_dropped_and_reported() {
        let (messages, dropped) = split_messages("system:\n\nuser:\nhi\nassistant:\n   \n");
        assert_eq!(roles(&messages), vec![("user", "hi")]);
        assert_eq!(
            dropped,
            vec![
                DroppedMessage {
                    index: 1,
                    role: Role::System
                },
                DroppedMessage {
                    index: 3,
                    role: Role::Assistant
                }
            ]
        );
    }

    #[test]
    fn inner_blank_lines_are_kept() {
        let (messages, _) = split_messages("user:\npara one\n\npara two\n");
        assert_eq!(messages[0].content, "para one\n\npara two");
    }
}
