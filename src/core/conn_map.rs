//! [`ConnMap`]: the connection table's connections by id, back to back in one sorted vector.
//!
//! Why not a B-tree: ids are issued in increasing order (one counter per direction), so a
//! B-tree's inserts land at its right edge and each leaf they split stays half empty for good,
//! about 200 bytes a 104-byte entry (a simulation of 30,000 nodes kept 750 MB in those leaves).
//! Here a lookup is a binary search over at most `max_connections` ids, an insert lands at or
//! near the end, a removal shifts what follows it (a few KiB at most), and the room is given
//! back once the map shrinks to a quarter of it: a burst does not leave it large for good.

use super::ConnId;

/// Room kept however empty the map gets.
const MIN_ROOM: usize = 8;

/// Values by [`ConnId`], in id order.
#[derive(Debug, Clone)]
pub(super) struct ConnMap<V> {
    entries: Vec<(ConnId, V)>,
}

impl<V> ConnMap<V> {
    /// An empty map; it allocates on the first insert.
    pub(super) fn new() -> ConnMap<V> {
        ConnMap { entries: Vec::new() }
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, id: ConnId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id, |(k, _)| *k)
    }

    /// The value of `id`.
    pub(super) fn get(&self, id: &ConnId) -> Option<&V> {
        self.find(*id).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `id`, to change.
    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut V> {
        self.find(*id).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `id` has a value.
    pub(super) fn contains_key(&self, id: &ConnId) -> bool {
        self.find(*id).is_ok()
    }

    /// Sets the value of `id`, returning the one it replaces.
    pub(super) fn insert(&mut self, id: ConnId, value: V) -> Option<V> {
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (id, value));
                None
            }
        }
    }

    /// Takes the value of `id` out.
    pub(super) fn remove(&mut self, id: &ConnId) -> Option<V> {
        let i = self.find(*id).ok()?;
        let (_, value) = self.entries.remove(i);
        let room = self.entries.capacity();
        if room > MIN_ROOM && self.entries.len() * 4 <= room {
            self.entries.shrink_to((self.entries.len() * 2).max(MIN_ROOM));
        }
        Some(value)
    }

    /// Every entry, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&ConnId, &V)> + '_ {
        self.entries.iter().map(|(id, v)| (id, v))
    }

    /// Room held, in entries.
    #[cfg(test)]
    fn room(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_ordered_map_whatever_the_insert_order() {
        let mut m = ConnMap::new();
        let mut model = std::collections::BTreeMap::new();
        // Both directions' counters, interleaved unevenly, some ids removed on the way.
        let mut rng = crate::rng::Rng::new(7);
        let (mut inbound, mut outbound) = (0, 0);
        for step in 0..2_000u64 {
            let id = if rng.chance(0.3) {
                inbound += 1;
                ConnId::inbound(inbound)
            } else {
                outbound += 1;
                ConnId::outbound(outbound)
            };
            assert_eq!(m.insert(id, step), model.insert(id, step));
            if rng.chance(0.45) {
                let keys: Vec<ConnId> = model.keys().copied().collect();
                let victim = keys[rng.below(keys.len() as u64) as usize];
                assert_eq!(m.remove(&victim), model.remove(&victim));
            }
            assert_eq!(m.len(), model.len());
        }
        assert!(m.iter().map(|(k, v)| (*k, *v)).eq(model.iter().map(|(k, v)| (*k, *v))));
        for (k, v) in &model {
            assert_eq!(m.get(k), Some(v));
            assert!(m.contains_key(k));
        }
        assert_eq!(m.insert(ConnId::inbound(1), 9), None, "removed on the way: inserted");
        assert_eq!(m.insert(ConnId::inbound(1), 10), Some(9), "present: replaced");
        *m.get_mut(&ConnId::inbound(1)).unwrap() += 1;
        assert_eq!(m.get(&ConnId::inbound(1)), Some(&11));
        assert_eq!(m.remove(&ConnId::inbound(1_000_000)), None);
    }

    #[test]
    fn gives_back_its_room_as_it_empties() {
        let mut m = ConnMap::new();
        for n in 0..256 {
            m.insert(ConnId::inbound(n), [0u8; 96]);
        }
        assert!(m.room() >= 256);
        for n in 0..254 {
            m.remove(&ConnId::inbound(n));
        }
        assert_eq!(m.len(), 2);
        assert!(m.room() <= 2 * MIN_ROOM, "{} entries of room left", m.room());
        assert!(m.get(&ConnId::inbound(255)).is_some());
        for n in 254..256 {
            m.remove(&ConnId::inbound(n));
        }
        assert!(m.is_empty() && m.room() <= MIN_ROOM);
    }
}
