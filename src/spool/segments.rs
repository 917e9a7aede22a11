//! The segment table of one shard's spool: which segment files exist, what
//! keeps each one alive, and which become collectable when that changes.
//!
//! A segment is kept while it is current, while any message in it is owed,
//! and while any segment it holds done markers for still exists (if the
//! markers went first, a restart would re-deliver those recipients).
//! Collection is driven by the events that can free a segment (its last
//! message finished, a segment it depends on deleted, it stopped being
//! current), so nothing is scanned after a commit, and a deleted segment is
//! forgotten: the table holds only what is on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A segment's place in this shard's table: recovered segments first, in
/// the order recovery found them, then the ones this run creates.
pub type SegmentId = u64;

struct Segment {
    path: Arc<PathBuf>,
    /// Messages in this segment not yet finished.
    live: usize,
    /// Segments holding messages this one has done markers for: it must outlive them.
    targets: Vec<SegmentId>,
    /// Segments holding done markers for messages in this one.
    dependents: Vec<SegmentId>,
    /// File length once it stopped being current (0 while current): what
    /// compaction weighs the bytes still owed in it against.
    bytes: u64,
}

/// A segment no longer written to, as compaction sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedSegment {
    pub id: SegmentId,
    pub bytes: u64,
    /// Other segments hold done markers for messages in this one and stay
    /// at least as long as it does: freeing it may free them too.
    pub keeps_markers: bool,
}

pub struct SegmentTable {
    segments: BTreeMap<SegmentId, Segment>,
    current: Option<SegmentId>,
    next_id: SegmentId,
}

impl SegmentTable {
    pub fn new() -> SegmentTable {
        SegmentTable { segments: BTreeMap::new(), current: None, next_id: 0 }
    }

    /// Track a segment file (recovered, or new: see `make_current`).
    pub fn insert(&mut self, path: Arc<PathBuf>) -> SegmentId {
        let id = self.next_id;
        self.next_id += 1;
        self.segments.insert(id, Segment { path, live: 0, targets: Vec::new(), dependents: Vec::new(), bytes: 0 });
        id
    }

    /// New records go to `id` from now on. Returns the files the previous
    /// current segment frees, if it was only kept for being current.
    pub fn make_current(&mut self, id: SegmentId) -> Vec<Arc<PathBuf>> {
        debug_assert!(self.segments.contains_key(&id));
        match self.current.replace(id) {
            Some(old) => self.collect(old),
            None => Vec::new(),
        }
    }

    pub fn current(&self) -> SegmentId {
        self.current.expect("a spool always has a current segment")
    }

    /// A message in `id` is now owed.
    pub fn message_stored(&mut self, id: SegmentId) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.live += 1;
        }
    }

    /// A message in `id` is finished. Returns the files this frees.
    pub fn message_finished(&mut self, id: SegmentId) -> Vec<Arc<PathBuf>> {
        let Some(s) = self.segments.get_mut(&id) else { return Vec::new() };
        debug_assert!(s.live > 0, "segment {id} finished more messages than it holds");
        s.live -= 1;
        self.collect(id)
    }

    /// `marker` holds done markers for messages in `target`: keep it until
    /// `target` is gone. A target already deleted needs no tie.
    pub fn depend(&mut self, marker: SegmentId, target: SegmentId) {
        if marker == target || !self.segments.contains_key(&target) {
            return;
        }
        let Some(m) = self.segments.get_mut(&marker) else { return };
        if !m.targets.contains(&target) {
            m.targets.push(target);
            self.segments.get_mut(&target).expect("checked above").dependents.push(marker);
        }
    }

    /// `id` is no longer written to and is `bytes` long.
    pub fn seal(&mut self, id: SegmentId, bytes: u64) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.bytes = bytes;
        }
    }

    /// Segments other than the current one, oldest first (for compaction).
    pub fn sealed(&self) -> Vec<SealedSegment> {
        self.segments
            .iter()
            .filter(|(&id, _)| Some(id) != self.current)
            .map(|(&id, s)| SealedSegment { id, bytes: s.bytes, keeps_markers: !s.dependents.is_empty() })
            .collect()
    }

    /// Every segment that nobody needs (once, after recovery).
    pub fn collect_all(&mut self) -> Vec<Arc<PathBuf>> {
        let ids: Vec<SegmentId> = self.segments.keys().copied().collect();
        ids.into_iter().flat_map(|id| self.collect(id)).collect()
    }

    /// Forget `start` if nothing keeps it, then every segment that only its
    /// existence kept. Returns the files to delete.
    fn collect(&mut self, start: SegmentId) -> Vec<Arc<PathBuf>> {
        let mut gone = Vec::new();
        let mut check = vec![start];
        while let Some(id) = check.pop() {
            let Some(s) = self.segments.get(&id) else { continue };
            if Some(id) == self.current || s.live > 0 || !s.targets.is_empty() {
                continue;
            }
            // With no targets left, no other segment lists this one as a dependent.
            let s = self.segments.remove(&id).expect("checked above");
            for d in s.dependents {
                if let Some(dependent) = self.segments.get_mut(&d) {
                    dependent.targets.retain(|&t| t != id);
                    check.push(d);
                }
            }
            gone.push(s.path);
        }
        gone
    }

    /// Segments tracked, i.e. on disk (or being unlinked).
    pub fn len(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: Vec<Arc<PathBuf>>) -> Vec<String> {
        paths.iter().map(|p| p.display().to_string()).collect()
    }

    #[test]
    fn a_marker_segment_goes_only_after_the_segment_it_marks() {
        let mut t = SegmentTable::new();
        let path = |name: &str| Arc::new(PathBuf::from(name));
        let (a, b) = (t.insert(path("a")), t.insert(path("b")));
        t.make_current(b);
        t.message_stored(a);
        let c = t.insert(path("c"));
        t.depend(b, a);
        assert!(names(t.make_current(c)).is_empty(), "b holds markers for a, which is still owed");
        assert_eq!(names(t.message_finished(a)), vec!["a", "b"]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn sealed_segments_carry_their_size_and_whether_markers_depend_on_them() {
        let mut t = SegmentTable::new();
        let path = |name: &str| Arc::new(PathBuf::from(name));
        let (a, b) = (t.insert(path("a")), t.insert(path("b")));
        t.make_current(a);
        t.message_stored(a);
        t.seal(a, 1000);
        t.make_current(b);
        t.depend(b, a);
        let c = t.insert(path("c"));
        t.seal(b, 200);
        t.make_current(c);
        assert_eq!(
            t.sealed(),
            vec![SealedSegment { id: a, bytes: 1000, keeps_markers: true }, SealedSegment { id: b, bytes: 200, keeps_markers: false }]
        );
    }
}
