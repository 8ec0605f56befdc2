//! What users type to name a state of a prompt: a version id prefix, `PROMPT@LABEL`,
//! `PROMPT@latest`, a run id, or `working` (the files on disk). Resolution goes through the
//! [`Store`] trait, so it works the same over the on-disk store and the in-memory one.

use std::collections::BTreeMap;

use crate::store::{Run, Store, StoreError, Version};

/// A resolved reference.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// The working tree of a prompt (the prompt name, once known).
    Working(Option<String>),
    Version(Box<Version>),
    Run(Box<Run>),
}

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no prompt `{0}` has versions in the store; commit it first with `promptdeck commit {0}`"
    )]
    UnknownPrompt(String),
    #[error("{prompt} has no label `{label}`{hint}")]
    UnknownLabel {
        prompt: String,
        label: String,
        hint: String,
    },
    #[error("`{0}` matches both a version and a run; type more digits")]
    Ambiguous(String),
    #[error(
        "`{0}` is not a reference: use a version id prefix (7+ hex digits), PROMPT@LABEL, a run id or `working`"
    )]
    Malformed(String),
}

/// The label name that means "the newest version" unless a real label has that name.
pub const LATEST: &str = "latest";
/// The reference to the files on disk.
pub const WORKING: &str = "working";

/// Resolves `text`. `prompt_of` maps what a user wrote before `@` to a prompt name (so
/// `prompts/cot/math.prompty@prod` works too).
pub fn resolve(
    store: &dyn Store,
    text: &str,
    prompt_of: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, RefError> {
    if text == WORKING {
        return Ok(Resolved::Working(None));
    }
    if let Some((prompt_text, label)) = text.rsplit_once('@') {
        let prompt = prompt_of(prompt_text).unwrap_or_else(|| prompt_text.to_owned());
        if label == WORKING {
            return Ok(Resolved::Working(Some(prompt)));
        }
        return resolve_label(store, &prompt, label).map(|v| Resolved::Version(Box::new(v)));
    }
    let hex = text.len() >= 4 && text.chars().all(|c| c.is_ascii_hexdigit());
    if !hex {
        return Err(RefError::Malformed(text.to_owned()));
    }
    let version = match store.resolve_version_prefix(text) {
        Ok(id) => store.get_version(&id)?,
        Err(StoreError::VersionNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let run = if text.len() <= 16 {
        match store.resolve_run_prefix(text) {
            Ok(id) => store.get_run(id)?,
            Err(StoreError::RunNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    match (version, run) {
        (Some(_), Some(_)) => Err(RefError::Ambiguous(text.to_owned())),
        (Some(v), None) => Ok(Resolved::Version(Box::new(v))),
        (None, Some(r)) => Ok(Resolved::Run(Box::new(r))),
        (None, None) => Err(StoreError::VersionNotFound {
            prefix: text.to_owned(),
        }
        .into()),
    }
}

fn resolve_label(store: &dyn Store, prompt: &str, label: &str) -> Result<Version, RefError> {
    if let Some(found) = store.get_label(prompt, label)? {
        return store.get_version(&found.version)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "label {label} points at missing version {}",
                found.version
            ))
            .into()
        });
    }
    if label == LATEST {
        return store
            .latest_version(prompt)?
            .ok_or_else(|| RefError::UnknownPrompt(prompt.to_owned()));
    }
    if store.latest_version(prompt)?.is_none() {
        return Err(RefError::UnknownPrompt(prompt.to_owned()));
    }
    let labels: Vec<String> = store
        .list_labels(Some(prompt))?
        .into_iter()
        .map(|l| l.label)
        .collect();
    let hint = if labels.is_empty() {
        " (it has no labels yet; set one with `promptdeck label set NAME REF`)".to_owned()
    } else {
        format!(" (its labels: {})", labels.join(", "))
    };
    Err(RefError::UnknownLabel {
        prompt: prompt.to_owned(),
        label: label.to_owned(),
        hint,
    })
}

/// The prompt a resolved reference belongs to, if it says.
pub fn prompt_of(resolved: &Resolved) -> Option<&str> {
    match resolved {
        Resolved::Working(prompt) => prompt.as_deref(),
        Resolved::Version(v) => Some(&v.prompt),
        Resolved::Run(r) => Some(&r.prompt),
    }
}

/// Files of a version, or of the version a run ran.
pub fn files_of(
    store: &dyn Store,
    resolved: &Resolved,
) -> Result<Option<BTreeMap<String, String>>, StoreError> {
    match resolved {
        Resolved::Working(_) => Ok(None),
        Resolved::Version(v) => Ok(Some(v.files.clone())),
        Resolved::Run(r) => Ok(store.get_version(&r.version)?.map(|v| v.files)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, UnitFiles};

    fn unit(prompt: &str, body: &str) -> UnitFiles {
        UnitFiles {
            prompt: prompt.to_owned(),
            files: [(format!("prompts/{prompt}.prompty"), body.to_owned())].into(),
        }
    }

    fn same_name(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn resolves_prefixes_labels_latest_and_working() {
        let store = MemoryStore::new();
        let first = store
            .commit(&unit("cot/math", "one"), "first", "me")
            .unwrap();
        let second = store
            .commit(&unit("cot/math", "two"), "second", "me")
            .unwrap();
        store
            .set_label("cot/math", "prod", first.id(), "me")
            .unwrap();

        let by_prefix = resolve(&store, &first.id()[..9], &same_name).unwrap();
        assert!(matches!(by_prefix, Resolved::Version(v) if v.id == first.id()));
        let by_label = resolve(&store, "cot/math@prod", &same_name).unwrap();
        assert!(matches!(by_label, Resolved::Version(v) if v.id == first.id()));
        let latest = resolve(&store, "cot/math@latest", &same_name).unwrap();
        assert!(matches!(latest, Resolved::Version(v) if v.id == second.id()));
        assert!(matches!(
            resolve(&store, "working", &same_name).unwrap(),
            Resolved::Working(None)
        ));

        let err = resolve(&store, "cot/math@staging", &same_name).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cot/math has no label `staging` (its labels: prod)"
        );
        let err = resolve(&store, "other@prod", &same_name).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no prompt `other` has versions")
        );
        assert!(matches!(
            resolve(&store, "zz-top", &same_name),
            Err(RefError::Malformed(_))
        ));
        assert!(resolve(&store, "0000000", &same_name).is_err());
    }
}
