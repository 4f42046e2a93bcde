//! A least-recently-used map with O(1) lookup, touch, insert and eviction:
//! a HashMap from key to slot, and a doubly linked list threaded through a
//! slot vector by index (no pointers, no unsafe). The map cache of guest
//! memory holds one entry per mapped 1 MiB bucket, thousands for a large
//! guest, so the old linear scan for the oldest entry cost a pass over all
//! of them on every miss.

use std::collections::HashMap;

const NIL: usize = usize::MAX;

struct Slot<V> {
    key: u64,
    value: Option<V>,
    /// Towards the most recently used end.
    prev: usize,
    /// Towards the least recently used end.
    next: usize,
}

pub(crate) struct Lru<V> {
    index: HashMap<u64, usize>,
    slots: Vec<Slot<V>>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next victim.
    tail: usize,
}

impl<V> Lru<V> {
    pub(crate) fn new() -> Self {
        Lru { index: HashMap::new(), slots: Vec::new(), free: Vec::new(), head: NIL, tail: NIL }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The value for `key`, which becomes the most recently used.
    pub(crate) fn get(&mut self, key: u64) -> Option<&V> {
        let slot = *self.index.get(&key)?;
        self.unlink(slot);
        self.push_front(slot);
        self.slots[slot].value.as_ref()
    }

    /// Insert as most recently used; an old value under `key` is returned.
    pub(crate) fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let old = self.remove(key);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Slot { key, value: Some(value), prev: NIL, next: NIL };
                s
            }
            None => {
                self.slots.push(Slot { key, value: Some(value), prev: NIL, next: NIL });
                self.slots.len() - 1
            }
        };
        self.push_front(slot);
        self.index.insert(key, slot);
        old
    }

    pub(crate) fn remove(&mut self, key: u64) -> Option<V> {
        let slot = self.index.remove(&key)?;
        self.unlink(slot);
        self.free.push(slot);
        self.slots[slot].value.take()
    }

    /// Remove and return the least recently used entry.
    pub(crate) fn pop_lru(&mut self) -> Option<(u64, V)> {
        if self.tail == NIL {
            return None;
        }
        let key = self.slots[self.tail].key;
        self.remove(key).map(|v| (key, v))
    }

    /// Empty the map, handing the values back (so the caller can drop them
    /// outside its lock).
    pub(crate) fn drain(&mut self) -> Vec<V> {
        let values = self.slots.iter_mut().filter_map(|s| s.value.take()).collect();
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        values
    }

    fn unlink(&mut self, slot: usize) {
        let (prev, next) = (self.slots[slot].prev, self.slots[slot].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].prev = prev,
        }
        self.slots[slot].prev = NIL;
        self.slots[slot].next = NIL;
    }

    fn push_front(&mut self, slot: usize) {
        self.slots[slot].prev = NIL;
        self.slots[slot].next = self.head;
        match self.head {
            NIL => self.tail = slot,
            h => self.slots[h].prev = slot,
        }
        self.head = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn eviction_order_follows_use() {
        let mut lru = Lru::new();
        for k in 0..4 {
            lru.insert(k, k * 10);
        }
        assert_eq!(lru.get(0), Some(&0));
        assert_eq!(lru.pop_lru(), Some((1, 10)));
        assert_eq!(lru.remove(2), Some(20));
        assert_eq!(lru.insert(3, 31), Some(30), "re-insert replaces and refreshes");
        assert_eq!(lru.pop_lru(), Some((0, 0)));
        assert_eq!(lru.pop_lru(), Some((3, 31)));
        assert_eq!(lru.pop_lru(), None);
        lru.insert(7, 70);
        assert_eq!(lru.drain(), vec![70]);
        assert_eq!((lru.len(), lru.get(7)), (0, None));
    }

    proptest! {
        /// Against a plain list model (front = most recent).
        #[test]
        fn behaves_like_a_list_model(ops in proptest::collection::vec((0u8..4, 0u64..8), 0..200)) {
            let mut lru = Lru::new();
            let mut model: VecDeque<(u64, u64)> = VecDeque::new();
            for (i, (op, key)) in ops.into_iter().enumerate() {
                let value = i as u64;
                match op {
                    0 => {
                        let got = lru.get(key).copied();
                        let pos = model.iter().position(|&(k, _)| k == key);
                        let want = pos.map(|p| { let e = model.remove(p).unwrap(); model.push_front(e); e.1 });
                        prop_assert_eq!(got, want);
                    }
                    1 => {
                        let old = lru.insert(key, value);
                        let pos = model.iter().position(|&(k, _)| k == key);
                        let want = pos.map(|p| model.remove(p).unwrap().1);
                        model.push_front((key, value));
                        prop_assert_eq!(old, want);
                    }
                    2 => {
                        let got = lru.remove(key);
                        let pos = model.iter().position(|&(k, _)| k == key);
                        prop_assert_eq!(got, pos.map(|p| model.remove(p).unwrap().1));
                    }
                    _ => prop_assert_eq!(lru.pop_lru(), model.pop_back()),
                }
                prop_assert_eq!(lru.len(), model.len());
            }
        }
    }
}
