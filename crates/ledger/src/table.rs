//! The state's tables: ordered maps and sets that remember which keys a
//! block changed, so that a block costs what it changed (the rows written
//! to disk, the leaves rehashed into the root) and not what the ledger
//! holds.
//!
//! Reads go through `Deref` to the plain collection; every write goes
//! through a method here that records its key, so no change can escape the
//! root or the store.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

/// An ordered map that records the keys written since they were last taken.
#[derive(Clone, Debug)]
pub(crate) struct Table<K, V> {
    map: BTreeMap<K, V>,
    changed: BTreeSet<K>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V> Table<K, V> {
    /// A table holding `map`, every key of it changed (a new state).
    pub(crate) fn changed(map: BTreeMap<K, V>) -> Self {
        let changed = map.keys().cloned().collect();
        Self { map, changed }
    }

    /// A table holding `map` as it is on disk: nothing changed.
    pub(crate) fn loaded(map: BTreeMap<K, V>) -> Self {
        Self {
            map,
            changed: BTreeSet::new(),
        }
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key.clone());
        self.map.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.changed.insert(key.clone());
        }
        removed
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        self.changed.insert(key.clone());
        Some(value)
    }

    /// The value at `key`, made with `make` if there is none.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.changed.insert(key.clone());
        self.map.entry(key).or_insert_with(make)
    }

    pub(crate) fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        self.get_or_insert_with(key, V::default)
    }

    pub(crate) fn extend(&mut self, entries: impl IntoIterator<Item = (K, V)>) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }

    /// Removes and returns every entry whose key is below `bound` (all of
    /// them if `None`).
    pub(crate) fn take_below(&mut self, bound: Option<&K>) -> BTreeMap<K, V> {
        let later = match bound {
            Some(bound) => self.map.split_off(bound),
            None => BTreeMap::new(),
        };
        let taken = std::mem::replace(&mut self.map, later);
        self.changed.extend(taken.keys().cloned());
        taken
    }

    /// The keys written since the last call (each once, in order).
    pub(crate) fn take_changed(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.changed)
    }
}

impl<K, V> Deref for Table<K, V> {
    type Target = BTreeMap<K, V>;

    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

/// Two tables are equal when they hold the same entries; what changed
/// since the last block is not part of the state.
impl<K: PartialEq, V: PartialEq> PartialEq for Table<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Eq, V: Eq> Eq for Table<K, V> {}

/// An ordered set that records the keys added or removed since they were
/// last taken.
#[derive(Clone, Debug)]
pub(crate) struct Keys<K> {
    set: BTreeSet<K>,
    changed: BTreeSet<K>,
}

impl<K> Default for Keys<K> {
    fn default() -> Self {
        Self {
            set: BTreeSet::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Keys<K> {
    /// A set holding `set`, every key of it changed (a new state).
    pub(crate) fn changed(set: BTreeSet<K>) -> Self {
        Self {
            changed: set.clone(),
            set,
        }
    }

    /// A set holding `set` as it is on disk: nothing changed.
    pub(crate) fn loaded(set: BTreeSet<K>) -> Self {
        Self {
            set,
            changed: BTreeSet::new(),
        }
    }

    pub(crate) fn insert(&mut self, key: K) -> bool {
        let added = self.set.insert(key.clone());
        if added {
            self.changed.insert(key);
        }
        added
    }

    pub(crate) fn remove(&mut self, key: &K) -> bool {
        let removed = self.set.remove(key);
        if removed {
            self.changed.insert(key.clone());
        }
        removed
    }

    pub(crate) fn extend(&mut self, keys: impl IntoIterator<Item = K>) {
        for key in keys {
            self.insert(key);
        }
    }

    /// The keys added or removed since the last call.
    pub(crate) fn take_changed(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.changed)
    }
}

impl<K> Deref for Keys<K> {
    type Target = BTreeSet<K>;

    fn deref(&self) -> &BTreeSet<K> {
        &self.set
    }
}

impl<K: PartialEq> PartialEq for Keys<K> {
    fn eq(&self, other: &Self) -> bool {
        self.set == other.set
    }
}

impl<K: Eq> Eq for Keys<K> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_is_recorded_and_reads_are_not() {
        let mut table = Table::loaded(BTreeMap::from([(1, 10), (2, 20), (5, 50)]));
        assert_eq!(table.get(&1), Some(&10));
        assert!(table.take_changed().is_empty(), "reads change nothing");
        table.insert(3, 30);
        *table.get_or_default(4) += 1;
        *table.get_mut(&1).unwrap() += 1;
        assert!(table.get_mut(&9).is_none());
        assert_eq!(table.remove(&9), None);
        assert_eq!(table.remove(&2), Some(20));
        assert_eq!(table.take_changed(), BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(
            table.take_below(Some(&4)),
            BTreeMap::from([(1, 11), (3, 30)])
        );
        assert_eq!(table.take_changed(), BTreeSet::from([1, 3]));
        assert_eq!(table.take_below(None).len(), 2);
        assert_eq!(table.take_changed(), BTreeSet::from([4, 5]));
        assert!(table.is_empty());

        let mut keys = Keys::loaded(BTreeSet::from([1]));
        assert!(!keys.insert(1), "already there: no change");
        keys.extend([2, 3]);
        assert!(keys.remove(&1));
        assert!(!keys.remove(&7));
        assert_eq!(keys.take_changed(), BTreeSet::from([1, 2, 3]));
        assert_eq!(Keys::changed(BTreeSet::from([2, 3])), keys);
    }
}
