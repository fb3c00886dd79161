//! Allocation of pool segments: a publisher's reusable payload memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::payload::SegmentId;

/// The smallest segment: one page.
pub const MIN_SEGMENT: u64 = 4096;

/// A segment is reused from among the free ones of its class that came back last, up to this
/// many bytes of them: the one that came back first among those (see [`Pool::alloc`]).
pub const ROTATION_BYTES: u64 = 8 << 20;

/// At most this many segments of a class take turns ([`ROTATION_BYTES`] of small ones would
/// keep thousands of memfds).
pub const MAX_ROTATION: u64 = 64;

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
    ///
    /// The free segment taken is the one that came back first among the last
    /// [`Self::rotation`] that came back: the segments a stream uses take turns. The one that
    /// came back last was just read by a subscriber, and its lines are still in that core's
    /// cache: writing it again costs a snoop of the other core per cache line. A segment read
    /// a few megabytes of payload ago has left that cache (measured between two pinned
    /// processes on a Xeon with 2 MiB of L2 per core, pooled, `Block` depth 8, 5 alternated
    /// runs: 1.2x the messages per second at 1 MiB and at 64 KiB, 4 KiB level, against reusing
    /// the last one). Free segments beyond the rotation are not taken while it has enough, so
    /// they idle and are [trimmed](Self::trim) as before: a stream keeps at most
    /// [`ROTATION_BYTES`] of free segments per class in turn besides those in flight.
    pub fn alloc(&mut self, len: u64) -> Option<PoolSlot> {
        let size = Self::class(len);
        if let Some(list) = self.free.get_mut(&size).filter(|l| !l.is_empty()) {
            let turn = list.len().saturating_sub(Self::rotation(size));
            let (segment, _) = list.remove(turn);
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

    /// How many free segments of `size` take turns ([`ROTATION_BYTES`] of them, at least one,
    /// at most [`MAX_ROTATION`]).
    pub fn rotation(size: u64) -> usize {
        let turns = (ROTATION_BYTES / size.max(1)).clamp(1, MAX_ROTATION);
        usize::try_from(turns).unwrap_or(1)
    }

    /// The segment is free again (since `now`, or since the last one of its class came back if
    /// that was later: each class's free segments stay in the order they came back in, the
    /// first the oldest). Ignores segments not of this pool.
    pub fn free(&mut self, segment: SegmentId, now: Instant) -> bool {
        let Some(&size) = self.sizes.get(&segment) else {
            return false;
        };
        let list = self.free.entry(size).or_default();
        debug_assert!(
            list.iter().all(|(s, _)| *s != segment),
            "segment freed twice"
        );
        let since = list.last().map_or(now, |&(_, last)| now.max(last));
        list.push((segment, since));
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
        self.free
            .values()
            .filter_map(|l| l.first())
            .map(|(_, since)| *since)
            .min()
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
    fn free_segments_take_turns_and_those_beyond_the_rotation_idle() {
        let now = t0();
        let size = 1 << 20;
        let turns = Pool::rotation(size);
        assert_eq!(turns, 8, "8 MiB of 1 MiB segments");
        let mut p = Pool::new(64 << 20, 1);
        let all: Vec<_> = (0..turns + 2)
            .map(|_| p.alloc(size).expect("room").segment)
            .collect();
        for (i, &s) in all.iter().enumerate() {
            p.free(s, now + Duration::from_millis(i as u64));
        }
        // A stream that frees each segment as it takes the next: it cycles through the last
        // `turns` that came back, oldest first, and never takes the first two.
        let mut taken = Vec::new();
        for i in 0..2 * turns {
            let s = p.alloc(size).expect("free").segment;
            taken.push(s);
            p.free(s, now + Duration::from_millis(100 + i as u64));
        }
        let rotation = &all[2..];
        assert_eq!(&taken[..turns], rotation);
        assert_eq!(&taken[turns..], rotation);
        // The two never taken idle and go; the rotation stays.
        let later = now + Duration::from_millis(100) + Duration::from_secs(1);
        assert_eq!(p.trim(later, Duration::from_secs(1)), &all[..2]);
        assert_eq!(p.bytes(), turns as u64 * size);
    }

    #[test]
    fn a_class_keeps_its_free_segments_in_order_whatever_clock_the_caller_reads() {
        let now = t0();
        let mut p = Pool::new(1 << 20, 1);
        let a = p.alloc(10).expect("room").segment;
        let b = p.alloc(10).expect("room").segment;
        let c = p.alloc(9000).expect("room").segment;
        p.free(a, now + Duration::from_millis(5));
        // An earlier clock than the last free's counts as that last one's.
        p.free(b, now);
        p.free(c, now + Duration::from_millis(3));
        assert_eq!(p.oldest_free(), Some(now + Duration::from_millis(3)));
        assert_eq!(
            p.trim(now + Duration::from_millis(1004), Duration::from_secs(1)),
            [c]
        );
        assert_eq!(p.oldest_free(), Some(now + Duration::from_millis(5)));
        let mut gone = p.trim(now + Duration::from_millis(1005), Duration::from_secs(1));
        gone.sort();
        assert_eq!(gone, [a, b]);
        assert_eq!(p.oldest_free(), None);
    }

    #[test]
    fn the_rotation_is_bounded_in_segments_and_at_least_one() {
        assert_eq!(Pool::rotation(MIN_SEGMENT), MAX_ROTATION as usize);
        assert_eq!(Pool::rotation(ROTATION_BYTES), 1);
        assert_eq!(Pool::rotation(1 << 30), 1);
        assert_eq!(Pool::rotation(0), MAX_ROTATION as usize);
    }

    #[test]
    fn an_empty_payload_takes_the_smallest_segment() {
        assert_eq!(Pool::class(0), MIN_SEGMENT);
        assert_eq!(Pool::class(1 << 24), 1 << 24);
        assert_eq!(Pool::class((1 << 24) + 1), 1 << 25);
    }
}
