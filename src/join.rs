//! Pending halves of split samples, keyed by (model, id), in arrival order. A second
//! half completes the pair and frees the id; in the daemon, halves older than the TTL
//! or beyond the capacity expire oldest first.
//!
//! Layout: entries live in a deque in arrival order (a completed entry leaves a hole,
//! compacted away when holes outnumber live entries); a `hashbrown::HashTable` maps
//! the key to the entry's sequence number. One allocation per entry (the id), plus the
//! scores it holds. [`Join::bytes`] estimates what the pending halves take, so that the
//! daemon can bound it whatever the halves carry (ids and scores up to a line each).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use crate::engine::estimate::EstimateTag;
use crate::engine::NO_SEGMENT;
use crate::event::{OwnedScores, Side};

/// One half waiting for its other half.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub model: u32,
    pub id: Box<str>,
    pub side: Side,
    pub class: u32,
    /// Event time (or arrival time when the event had none), ns since the epoch.
    pub time_ns: i64,
    /// When predmon received it: the TTL counts from here.
    pub arrival_ns: i64,
    pub scores: Option<OwnedScores>,
    /// A prediction's estimate before its label (extension E1), taken back at the join.
    #[serde(default, skip_serializing_if = "is_no_estimate")]
    pub estimate: EstimateTag,
    /// A multi-label half's class set (extension E7): sorted class indices; `class` is
    /// then unused. Boxed twice so that it costs single-label halves 8 bytes, not 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Box<Box<[u32]>>>,
    /// The half's segment (extension E4), [`NO_SEGMENT`] without one. 16 bits fit
    /// the padding beside `side`: a pending half stays 72 bytes (`max_segments` is at
    /// most 10,000).
    #[serde(default = "no_segment", skip_serializing_if = "is_no_segment")]
    segment: u16,
    #[serde(skip)]
    hash: u64,
}

fn is_no_estimate(t: &EstimateTag) -> bool {
    !t.is_some()
}

/// What the allocator takes for `len` bytes on the heap (glibc: an 8-byte header, 16-byte
/// granules, 32 bytes at least); 0 for nothing.
fn heap(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).max(32).next_multiple_of(16)
    }
}

fn no_segment() -> u16 {
    u16::MAX
}

fn is_no_segment(s: &u16) -> bool {
    *s == u16::MAX
}

impl Pending {
    /// The half's segment, [`NO_SEGMENT`] without one.
    pub fn segment(&self) -> u32 {
        match self.segment {
            u16::MAX => NO_SEGMENT,
            s => u32::from(s),
        }
    }

    pub fn set_segment(&mut self, segment: u32) {
        self.segment = u16::try_from(segment).unwrap_or(u16::MAX);
    }

    /// Estimated memory of this half while pending: its slot in the deque and the hash
    /// table, its id, and the scores or class set it holds.
    pub fn footprint(&self) -> usize {
        let scores = self.scores.as_ref().map_or(0, |s| heap(s.packed_len()));
        let set = self
            .set
            .as_ref()
            .map_or(0, |s| heap(16) + heap(4 * s.len()));
        std::mem::size_of::<Option<Pending>>()
            + 2 * std::mem::size_of::<u64>()
            + heap(self.id.len())
            + scores
            + set
    }

    pub fn new(
        model: u32,
        id: &str,
        side: Side,
        class: u32,
        time_ns: i64,
        arrival_ns: i64,
        scores: Option<OwnedScores>,
    ) -> Pending {
        Pending {
            model,
            id: id.into(),
            side,
            class,
            time_ns,
            arrival_ns,
            scores,
            estimate: EstimateTag::default(),
            set: None,
            segment: u16::MAX,
            hash: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct Join {
    table: HashTable<u64>,
    entries: VecDeque<Option<Pending>>,
    /// Sequence number of `entries[0]`.
    base: u64,
    live: usize,
    /// Pending halves per model, indexed [model][side].
    pending: Vec<[u64; 2]>,
    /// The sum of the live entries' [`Pending::footprint`].
    bytes: usize,
    /// Bumped by every change: a snapshot written in several holds of the engine lock
    /// checks that nothing changed between them.
    generation: u64,
}

impl Clone for Join {
    fn clone(&self) -> Join {
        Join::from(self.to_vec())
    }
}

fn key_hash(model: u32, id: &str) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    model.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

impl Join {
    pub fn len(&self) -> usize {
        self.live
    }

    /// Estimated memory of the pending halves (see [`Pending::footprint`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Pending halves of one model: [predictions, labels].
    pub fn pending_of(&self, model: u32) -> [u64; 2] {
        self.pending.get(model as usize).copied().unwrap_or([0; 2])
    }

    fn find(&self, model: u32, id: &str, hash: u64) -> Option<u64> {
        self.table
            .find(hash, |&seq| {
                let e = self.entries[(seq - self.base) as usize]
                    .as_ref()
                    .expect("table points at live entries");
                e.model == model && *e.id == *id
            })
            .copied()
    }

    /// The side of the half pending under (model, id), if any.
    pub fn pending_side(&self, model: u32, id: &str) -> Option<Side> {
        let seq = self.find(model, id, key_hash(model, id))?;
        self.entries[(seq - self.base) as usize]
            .as_ref()
            .map(|e| e.side)
    }

    /// Removes and returns the half pending under (model, id): the pair is complete.
    pub fn take(&mut self, model: u32, id: &str) -> Option<Pending> {
        let hash = key_hash(model, id);
        let seq = self.find(model, id, hash)?;
        Some(self.remove(seq, hash))
    }

    /// Holds a half until its other half arrives. The caller has made sure nothing is
    /// pending under its key ([`Join::take`] returned `None`).
    pub fn hold(&mut self, mut half: Pending) {
        half.hash = key_hash(half.model, &half.id);
        self.push(half);
    }

    fn push(&mut self, half: Pending) {
        self.generation += 1;
        let model = half.model as usize;
        if self.pending.len() <= model {
            self.pending.resize(model + 1, [0; 2]);
        }
        self.pending[model][half.side as usize] += 1;
        self.bytes += half.footprint();
        let seq = self.base + self.entries.len() as u64;
        let hash = half.hash;
        self.entries.push_back(Some(half));
        let (entries, base) = (&self.entries, self.base);
        self.table.insert_unique(hash, seq, |&s| {
            entries[(s - base) as usize].as_ref().map_or(0, |e| e.hash)
        });
        self.live += 1;
    }

    /// Adds a half read back from a snapshot or copied, which carries no hash (it is not
    /// serialized).
    fn push_restored(&mut self, mut half: Pending) {
        half.hash = key_hash(half.model, &half.id);
        self.push(half);
    }

    fn remove(&mut self, seq: u64, hash: u64) -> Pending {
        self.generation += 1;
        if let Ok(slot) = self.table.find_entry(hash, |&s| s == seq) {
            slot.remove();
        }
        let half = self.entries[(seq - self.base) as usize]
            .take()
            .expect("live entry");
        self.pending[half.model as usize][half.side as usize] -= 1;
        self.bytes -= half.footprint();
        self.live -= 1;
        self.trim_front();
        if self.entries.len() > 1024 && self.entries.len() > 2 * self.live {
            self.compact();
        }
        half
    }

    fn trim_front(&mut self) {
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.base += 1;
        }
    }

    /// Renumbers the live entries contiguously and rebuilds the table.
    fn compact(&mut self) {
        let live: VecDeque<Option<Pending>> =
            self.entries.drain(..).filter(Option::is_some).collect();
        self.base = 0;
        self.entries = live;
        self.table.clear();
        for (seq, e) in self.entries.iter().enumerate() {
            let hash = e.as_ref().expect("live").hash;
            let entries = &self.entries;
            self.table.insert_unique(hash, seq as u64, |&s| {
                entries[s as usize].as_ref().map_or(0, |e| e.hash)
            });
        }
    }

    /// Removes and returns the oldest half, if any.
    pub fn pop_oldest(&mut self) -> Option<Pending> {
        self.trim_front();
        let seq = self.base;
        let hash = self.entries.front()?.as_ref()?.hash;
        Some(self.remove(seq, hash))
    }

    /// Arrival time of the oldest pending half.
    pub fn oldest_arrival_ns(&self) -> Option<i64> {
        self.entries.iter().flatten().next().map(|e| e.arrival_ns)
    }

    /// Every pending half in arrival order (for snapshots).
    pub fn to_vec(&self) -> Vec<Pending> {
        self.entries.iter().flatten().cloned().collect()
    }

    /// Changes so far (see the field): equal before and after, nothing changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Slots in arrival order, live or completed; with [`Join::halves_in`], a snapshot
    /// serializes the halves a range of slots at a time. Stable while
    /// [`Join::generation`] is.
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// The live halves in `range` of the slots, in arrival order.
    pub fn halves_in(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &Pending> {
        self.entries.range(range).flatten()
    }
}

impl From<Vec<Pending>> for Join {
    fn from(halves: Vec<Pending>) -> Join {
        let mut join = Join::default();
        for h in halves {
            join.push_restored(h);
        }
        join
    }
}

/// Read from the list of pending halves in arrival order, each held as it is read: no
/// intermediate `Vec` of every half (with 1,000,000 pending, ~110 MB more at restore).
impl<'de> Deserialize<'de> for Join {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Join, D::Error> {
        struct Halves;
        impl<'de> serde::de::Visitor<'de> for Halves {
            type Value = Join;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of pending halves")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Join, A::Error> {
                let mut join = Join::default();
                while let Some(h) = seq.next_element::<Pending>()? {
                    join.push_restored(h);
                }
                Ok(join)
            }
        }
        d.deserialize_seq(Halves)
    }
}

/// Serialized as the list of pending halves in arrival order, without copying them.
impl Serialize for Join {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.entries.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(model: u32, id: &str, side: Side, arrival: i64) -> Pending {
        Pending::new(model, id, side, 0, arrival, arrival, None)
    }

    /// The segment (E4) sits in padding: a pending half is no bigger for it (80 bytes
    /// since E7's class-set pointer; the flood test's RSS ceiling depends on it).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_pending_half_is_80_bytes() {
        assert_eq!(std::mem::size_of::<Pending>(), 80);
    }

    #[test]
    fn pairs_complete_and_free_the_id() {
        let mut j = Join::default();
        j.hold(half(0, "a", Side::Prediction, 1));
        assert_eq!(j.pending_side(0, "a"), Some(Side::Prediction));
        assert_eq!(j.pending_side(1, "a"), None, "ids are per model");
        assert_eq!(j.take(0, "a").map(|p| p.arrival_ns), Some(1));
        assert_eq!(j.len(), 0);
        assert!(j.take(0, "a").is_none(), "the id is free again");
        j.hold(half(0, "a", Side::Label, 3));
        assert_eq!(j.pending_of(0), [0, 1]);
    }

    #[test]
    fn oldest_first_and_compaction_keep_lookups_right() {
        let mut j = Join::default();
        for i in 0..5000 {
            j.hold(half(0, &i.to_string(), Side::Prediction, i));
        }
        // Complete every id but the multiples of 7: holes force compaction.
        for i in 0..5000 {
            if i % 7 != 0 {
                assert!(j.take(0, &i.to_string()).is_some());
            }
        }
        assert_eq!(j.len(), 715);
        assert_eq!(j.pop_oldest().unwrap().id.as_ref(), "0");
        assert_eq!(j.oldest_arrival_ns(), Some(7));
        assert_eq!(j.pending_side(0, "4998"), Some(Side::Prediction));
        let restored = Join::from(j.to_vec());
        assert_eq!(restored.len(), 714);
        let footprints: usize = j.to_vec().iter().map(Pending::footprint).sum();
        assert_eq!((j.bytes(), restored.bytes()), (footprints, footprints));
        while j.pop_oldest().is_some() {}
        assert_eq!(j.bytes(), 0);
        assert_eq!(restored.pending_side(0, "14"), Some(Side::Prediction));
    }
}
