//! Allocation of pool segments: a publisher's reusable payload memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::payload::SegmentId;

/// The smallest segment: one page.
pub const MIN_SEGMENT: u64 = 4096;

/// A free segment for a payload, from [`Pool::alloc`].
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct PoolSlot {
    /// The segment.
    pub segment: SegmentId,
    /// Its size, a power of two at least [`MIN_SEGMENT`].
    pub size: u64,
    /// Whether the driver must create the segment first (it is new to the pool).
    pub new: bool,
}

/// A publisher's pool of segments, one payload per segment, in power-of-two size classes.
///
/// Segments are created on demand while the pool stays within `max_bytes`, and reused once the
/// data plane releases them ([`DataOutput::Release`](super::DataOutput::Release)); the pool
/// never writes (never hands out) a segment a subscriber still holds, because only a release
/// frees one. When the bound is reached and no segment of the right size is free, `alloc`
/// returns `None` and the caller waits for a release or sends the payload another way.
#[derive(Clone, Debug)]
pub struct Pool {
    max_bytes: u64,
    bytes: u64,
    next: u64,
    /// Size class -> free segments, with when they came back.
    free: BTreeMap<u64, Vec<(SegmentId, Instant)>>,
    /// Every segment of the pool and its size.
    sizes: BTreeMap<SegmentId, u64>,
    /// Segments currently handed out.
    busy: usize,
}

impl Pool {
    /// An empty pool that grows to at most `max_bytes`. Segment ids start at `first_id` (so a
    /// driver can keep pool and fresh segments apart).
    pub fn new(max_bytes: u64, first_id: u64) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            next: first_id,
            free: BTreeMap::new(),
            sizes: BTreeMap::new(),
            busy: 0,
        }
    }

    /// The size class for a payload of `len` bytes.
    pub fn class(len: u64) -> u64 {
        len.max(MIN_SEGMENT).next_power_of_two()
    }

    /// A segment for a payload of `len` bytes: a free one of its class, or a new one within the
    /// bound, or `None`.
    pub fn alloc(&mut self, len: u64) -> Option<PoolSlot> {
        let size = Self::class(len);
        if let Some((segment, _)) = self.free.get_mut(&size).and_then(Vec::pop) {
            self.busy += 1;
            return Some(PoolSlot {
                segment,
                size,
                new: false,
            });
        }
        if self
            .bytes
            .checked_add(size)
            .is_none_or(|b| b > self.max_bytes)
        {
            return None;
        }
        let segment = SegmentId(self.next);
        self.next += 1;
        self.bytes += size;
        self.sizes.insert(segment, size);
        self.busy += 1;
        Some(PoolSlot {
            segment,
            size,
            new: true,
        })
    }

    /// The segment is free again (since `now`). Ignores segments not of this pool.
    pub fn free(&mut self, segment: SegmentId, now: Instant) -> bool {
        let Some(&size) = self.sizes.get(&segment) else {
            return false;
        };
        let list = self.free.entry(size).or_default();
        debug_assert!(
            list.iter().all(|(s, _)| *s != segment),
            "segment freed twice"
        );
        list.push((segment, now));
        self.busy -= 1;
        true
    }

    /// Forgets the segments free since at least `idle` before `now`, so that an idle publisher
    /// gives its memory back; the caller destroys them (and tells the subscribers).
    pub fn trim(&mut self, now: Instant, idle: Duration) -> Vec<SegmentId> {
        let mut gone = Vec::new();
        for (size, list) in &mut self.free {
            list.retain(|&(segment, since)| {
                let keep = now.saturating_duration_since(since) < idle;
                if !keep {
                    gone.push((segment, *size));
                }
                keep
            });
        }
        self.free.retain(|_, l| !l.is_empty());
        for &(segment, size) in &gone {
            self.sizes.remove(&segment);
            self.bytes -= size;
        }
        gone.into_iter().map(|(s, _)| s).collect()
    }

    /// When the oldest free segment came back (for scheduling [`trim`](Self::trim)).
    pub fn oldest_free(&self) -> Option<Instant> {
        self.free.values().flatten().map(|(_, since)| *since).min()
    }

    /// Whether `segment` belongs to this pool.
    pub fn contains(&self, segment: SegmentId) -> bool {
        self.sizes.contains_key(&segment)
    }

    /// Bytes of segments created.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segments handed out and not freed yet.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// The bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        Instant::now()
    }

    #[test]
    fn idle_segments_are_trimmed_and_their_bytes_given_back() {
        let now = t0();
        let mut p = Pool::new(1 << 20, 1);
        let a = p.alloc(10).expect("room");
        let b = p.alloc(10).expect("room");
        p.free(a.segment, now);
        p.free(b.segment, now + Duration::from_secs(2));
        assert_eq!(p.oldest_free(), Some(now));
        assert_eq!(
            p.trim(now + Duration::from_millis(1500), Duration::from_secs(1)),
            [a.segment]
        );
        assert_eq!(p.bytes(), 4096);
        assert!(!p.contains(a.segment) && p.contains(b.segment));
        let c = p.alloc(10).expect("room");
        assert_eq!((c.segment, c.new), (b.segment, false));
    }

    #[test]
    fn segments_are_reused_by_class_and_the_bound_holds() {
        let now = t0();
        let mut p = Pool::new(64 * 1024, 100);
        let a = p.alloc(10).expect("room");
        assert_eq!((a.segment, a.size, a.new), (SegmentId(100), 4096, true));
        let b = p.alloc(5000).expect("room");
        assert_eq!((b.size, b.new), (8192, true));
        assert!(p.free(a.segment, now));
        let c = p.alloc(4096).expect("reused");
        assert_eq!((c.segment, c.new), (a.segment, false));
        // 4 + 8 KiB used; a 64 KiB segment does not fit, a 32 KiB one does.
        assert_eq!(p.alloc(64 * 1024), None);
        assert!(p.alloc(20_000).is_some_and(|s| s.size == 32768));
        assert_eq!(p.busy(), 3);
        assert!(!p.free(SegmentId(7), now), "not of this pool");
    }

    #[test]
    fn an_empty_payload_takes_the_smallest_segment() {
        assert_eq!(Pool::class(0), MIN_SEGMENT);
        assert_eq!(Pool::class(1 << 24), 1 << 24);
        assert_eq!(Pool::class((1 << 24) + 1), 1 << 25);
    }
}
