//! [`MemoryStore`]: the full store over an in-memory ordered map, for tests
//! of callers that should not touch the disk. It shares all logic with the
//! sled store (see [`super::engine`]), so behaviour is identical; nothing
//! survives the value being dropped.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::engine::{Entries, Kv, KvStore, Write1};
use super::error::StoreError;

/// In-memory backend.
#[derive(Default)]
pub struct MemKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// A store kept in memory; see [`super::Store`].
pub type MemoryStore = KvStore<MemKv>;

impl KvStore<MemKv> {
    /// An empty in-memory store.
    pub fn new() -> Self {
        let store = KvStore::with_backend(MemKv::default());
        // Writing one key into a map cannot fail; the result only exists
        // because the trait is fallible for disk backends.
        let _ = store.check_format();
        store
    }
}

impl Default for KvStore<MemKv> {
    fn default() -> Self {
        Self::new()
    }
}

impl MemKv {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // Every mutation below completes without panicking, so a poisoned
        // lock never guards a half-applied batch.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let map = self.map();
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let iter = map.range::<[u8], _>((Bound::Included(start), upper));
        let pick = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if rev {
            iter.rev().take(limit).map(pick).collect()
        } else {
            iter.take(limit).map(pick).collect()
        })
    }

    fn apply(&self, writes: Vec<Write1>) -> Result<(), StoreError> {
        let mut map = self.map();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    map.insert(k, v);
                }
                None => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }
}
