//! Segments received from publishers: verified when their record arrives, registered under a
//! fresh [`SegmentId`] for the member, mapped once on first delivery, dropped on release.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use ipc_os::memfd::{self, Mapping, SealSet, VerifiedSegment};
use ipc_proto::data::{ReceivedSegment, SegmentId};
use tracing::warn;

/// A received segment: verified, until first mapped, then its mapping.
#[derive(Debug)]
struct Received {
    verified: Option<VerifiedSegment>,
    size: u64,
    map: Option<Arc<Mapping>>,
}

/// The segments received from publishers, by the handle the member knows them by.
#[derive(Debug)]
pub struct ReceivedSegments {
    segments: HashMap<SegmentId, Received>,
    next: u64,
}

impl Default for ReceivedSegments {
    fn default() -> Self {
        Self {
            segments: HashMap::new(),
            next: 1,
        }
    }
}

impl ReceivedSegments {
    /// Registers a verified segment under a fresh handle, for the member.
    pub fn register(&mut self, v: VerifiedSegment) -> ReceivedSegment {
        let segment = SegmentId(self.next);
        self.next += 1;
        let (size, seals) = (v.size(), v.seals().into());
        self.segments.insert(
            segment,
            Received {
                verified: Some(v),
                size,
                map: None,
            },
        );
        ReceivedSegment {
            segment,
            size,
            seals,
        }
    }

    /// The member lets go of a segment (or the record that brought it was refused).
    pub fn release(&mut self, segment: SegmentId) {
        self.segments.remove(&segment);
    }

    /// Maps the first `len` bytes of a fresh segment, which is used once: its handle is gone
    /// afterwards. Not mapped if it is larger than `max` (`None`: nobody takes it).
    pub fn map_fresh(
        &mut self,
        segment: SegmentId,
        len: u64,
        max: Option<u64>,
    ) -> Option<Arc<Mapping>> {
        let r = self.segments.remove(&segment)?;
        let max = max?;
        if r.size > max {
            warn!(size = r.size, max, "a fresh payload too large: not mapped");
            return None;
        }
        // The data plane checked `len` against the size (and `map_ro` checks it again); the
        // mapping keeps the pages and the fd closes here.
        r.verified?
            .map_ro(0, len)
            .map(Arc::new)
            .map_err(|e| warn!(error = %e, "mmap failed"))
            .ok()
    }

    /// Maps a pool segment whole, once; later deliveries share the mapping. Not mapped if it is
    /// larger than `max` (`None`: nobody takes it).
    pub fn map_pooled(&mut self, segment: SegmentId, max: Option<u64>) -> Option<Arc<Mapping>> {
        let r = self.segments.get_mut(&segment)?;
        if r.map.is_none() {
            let max = max?;
            if r.size > max {
                warn!(size = r.size, max, "a pool segment too large: not mapped");
                return None;
            }
            let v = r.verified.as_ref()?;
            let m = v
                .map_ro(0, r.size)
                .map_err(|e| warn!(error = %e, "mmap failed"))
                .ok()?;
            // The mapping keeps the pages; the fd closes here.
            r.map = Some(Arc::new(m));
            r.verified = None;
        }
        r.map.clone()
    }
}

/// Maps one of this node's own pool segments read-only, as any subscriber would (a node
/// delivering to itself).
pub fn map_own(fd: BorrowedFd<'_>) -> Option<Arc<Mapping>> {
    let fd = fd.try_clone_to_owned().ok()?;
    let v = memfd::verify(fd, SealSet::EMPTY, 0, 0).ok()?;
    v.map_ro(0, v.size()).map(Arc::new).ok()
}

#[cfg(test)]
mod tests {
    use ipc_os::memfd::Segment;

    use super::*;

    fn segment(len: usize) -> VerifiedSegment {
        let s = Segment::create("received", len).expect("memfd");
        s.seal(SealSet::FRESH).expect("sealed");
        memfd::verify(s.into_fd(), SealSet::EMPTY, 0, 0).expect("verified")
    }

    #[test]
    fn fresh_segments_map_once_within_their_bound() {
        let mut table = ReceivedSegments::default();
        let big = table.register(segment(4096));
        assert_eq!(big.size, 4096);
        assert!(
            table.map_fresh(big.segment, 10, Some(100)).is_none(),
            "too large"
        );
        assert!(table.map_fresh(big.segment, 10, None).is_none(), "gone");
        let ok = table.register(segment(4096));
        assert_ne!(ok.segment, big.segment);
        let map = table
            .map_fresh(ok.segment, 10, Some(u64::MAX))
            .expect("mapped");
        assert_eq!(map.as_slice().len(), 10);
        assert!(
            table.map_fresh(ok.segment, 10, Some(u64::MAX)).is_none(),
            "used once"
        );
    }

    #[test]
    fn pool_segments_map_once_and_share_the_mapping_until_released() {
        let mut table = ReceivedSegments::default();
        let s = table.register(segment(4096)).segment;
        assert!(table.map_pooled(s, None).is_none(), "nobody takes it");
        let first = table.map_pooled(s, Some(u64::MAX)).expect("mapped");
        let again = table.map_pooled(s, None).expect("already mapped");
        assert!(Arc::ptr_eq(&first, &again));
        table.release(s);
        assert!(table.map_pooled(s, Some(u64::MAX)).is_none());
    }
}
