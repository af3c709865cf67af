//! A read-through cache of identity records, dropped whole whenever the store's revision moves.
//!
//! Every change to identity or authorization data bumps the revision in the same transaction, so
//! a request that sees a new revision sees the change: revocations, disabled users and changed
//! grants take effect on the next request, on every node.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

/// One map of the cache. Entries are inserted only if the cache generation has not moved since
/// the value was loaded, so a value read before a change can never outlive it.
pub struct Memo<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new() -> Self {
        Memo {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn get<Q>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.read().ok()?.get(k).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Inserts unconditionally: for memos whose values depend only on their key's content,
    /// which no change of the store can make stale.
    pub fn insert(&self, k: K, v: V) {
        if let Ok(mut m) = self.map.write() {
            m.insert(k, v);
        }
    }

    fn insert_if(&self, generation: &AtomicI64, loaded_at: i64, k: K, v: V) {
        if let Ok(mut m) = self.map.write() {
            if generation.load(Ordering::SeqCst) == loaded_at {
                m.insert(k, v);
            }
        }
    }

    fn clear(&self) {
        if let Ok(mut m) = self.map.write() {
            m.clear();
        }
    }
}

/// The generation every memo of a cache shares.
pub struct Generation(AtomicI64);

impl Generation {
    pub fn new() -> Self {
        Generation(AtomicI64::new(i64::MIN))
    }

    /// Moves to `revision`, clearing `memos` if it changed. Returns the generation to stamp loads
    /// with.
    /// The revision the memos hold data of.
    pub fn current(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn sync(&self, revision: i64, memos: &[&dyn Clear]) -> i64 {
        if self.0.load(Ordering::SeqCst) != revision {
            // Set first, then clear: a concurrent insert either sees the new generation and
            // skips, or lands before the clear and is removed by it.
            self.0.store(revision, Ordering::SeqCst);
            for m in memos {
                m.clear();
            }
        }
        revision
    }

    pub fn put<K: Eq + Hash, V: Clone>(&self, memo: &Memo<K, V>, loaded_at: i64, k: K, v: V) {
        memo.insert_if(&self.0, loaded_at, k, v);
    }
}

pub trait Clear: Sync {
    fn clear(&self);
}

impl<K: Eq + Hash + Send + Sync, V: Clone + Send + Sync> Clear for Memo<K, V> {
    fn clear(&self) {
        Memo::clear(self)
    }
}
