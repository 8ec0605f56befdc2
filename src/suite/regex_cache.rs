//! Compiled regexes shared by validation and evaluation. A tests file often repeats one pattern
//! (a `defaultTest` regex applies to every case), and compiling a Unicode-aware pattern such as
//! `\d+` builds a large automaton: measured in `promptdeck bench harness`, compiling the same
//! pattern once per check was most of the harness's CPU time. `Regex` clones share one compiled
//! program, so the cache hands out cheap clones.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Patterns kept at most; the cache is emptied when it fills (patterns are few in practice, and
/// a generated suite with a distinct pattern per case must not grow memory without bound).
const CAPACITY: usize = 1024;

/// Compiles `pattern`, or returns the compiled copy from an earlier call.
pub fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked while holding it; the map is intact.
    if let Some(re) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pattern)
    {
        return Ok(re.clone());
    }
    let re = regex::Regex::new(pattern)?;
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= CAPACITY {
        map.clear();
    }
    map.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_pattern_same_answers() {
        let a = super::compile(r"^Answer: \d+").unwrap();
        let b = super::compile(r"^Answer: \d+").unwrap();
        assert!(a.is_match("Answer: 7") && b.is_match("Answer: 42"));
        assert!(super::compile("((").is_err());
    }
}
