//! The bytes of a loan, in both drivers ([`LoanBuf`]): a plain buffer, a pool segment or a
//! fresh memfd, written in place and sent without a copy. Each driver's `Loan` wraps one,
//! with what its own pool needs to take the segment back. And what a node's publishing holds
//! of its segments ([`SegmentsInUse`]).

use ipc_os::memfd::{MappingMut, Segment};

use crate::Via;

/// A node's publishing memory in use: both return to 0 once every subscriber has dropped what
/// it received, or has gone.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct SegmentsInUse {
    /// Pool segments lent out (to loans or subscribers) and not back yet.
    pub pool: usize,
    /// Fresh segments not released yet (not sent, or still held by a subscriber).
    pub fresh: usize,
}

/// A pool segment's writable bytes, as a driver holds them while loaned.
pub trait PoolBytes {
    /// The segment's bytes.
    fn bytes(&self) -> &[u8];
    /// The segment's bytes, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// Where a loan's bytes are: `P` is the driver's hold on a pool segment.
#[derive(Debug)]
pub enum LoanBuf<P> {
    /// A plain buffer, sent inline in the record.
    Inline(Vec<u8>),
    /// A pool segment.
    Pooled(P),
    /// A fresh memfd, sealed when sent.
    Fresh {
        /// The memfd.
        segment: Segment,
        /// Its writable mapping, dropped before the seals are added.
        map: MappingMut,
    },
}

impl<P: PoolBytes> LoanBuf<P> {
    /// How the loan will travel.
    pub fn via(&self) -> Via {
        match self {
            Self::Inline(_) => Via::Inline,
            Self::Pooled(_) => Via::Pooled,
            Self::Fresh { .. } => Via::Fresh,
        }
    }

    /// The first `len` bytes.
    pub fn bytes(&self, len: usize) -> &[u8] {
        match self {
            Self::Inline(v) => v,
            Self::Pooled(p) => &p.bytes()[..len],
            Self::Fresh { map, .. } => &map.as_slice()[..len],
        }
    }

    /// The first `len` bytes, writable.
    pub fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        match self {
            Self::Inline(v) => v,
            Self::Pooled(p) => &mut p.bytes_mut()[..len],
            Self::Fresh { map, .. } => &mut map[..len],
        }
    }
}

/// The buffer of an inline loan of `len` bytes: a copy of `data` if given (of that length),
/// else `len` bytes to write in place. Made of `spare`, a buffer the data plane had left
/// ([`Member::spare_buffer`]), when there is one: no allocation, and only the bytes it never
/// held are zeroed (the others are what an earlier message of this node left there).
///
/// [`Member::spare_buffer`]: ipc_proto::Member::spare_buffer
pub fn inline_buffer(spare: Option<Vec<u8>>, len: usize, data: Option<&[u8]>) -> Vec<u8> {
    match (spare, data) {
        (Some(mut buf), Some(data)) => {
            buf.clear();
            buf.extend_from_slice(data);
            buf
        }
        (None, Some(data)) => data.to_vec(),
        (Some(mut buf), None) => {
            buf.resize(len, 0);
            buf
        }
        (None, None) => vec![0; len],
    }
}

/// A fresh segment of `len` bytes to write a payload into, then seal and send.
pub fn fresh_loan<P>(len: usize) -> std::io::Result<LoanBuf<P>> {
    let segment = Segment::create("ipc-pubsub-fresh", len)?;
    let map = segment.map_rw()?;
    Ok(LoanBuf::Fresh { segment, map })
}

/// Writes `Deref`, `DerefMut` and `Debug` for a driver's `Loan`, whose fields `kind` (a
/// [`LoanBuf`]) and `len` hold its bytes: `ipc_driver_core::loan_bytes!(Loan);`.
#[macro_export]
macro_rules! loan_bytes {
    ($loan:ty) => {
        impl std::ops::Deref for $loan {
            type Target = [u8];

            fn deref(&self) -> &[u8] {
                self.kind.bytes(self.len)
            }
        }

        impl std::ops::DerefMut for $loan {
            fn deref_mut(&mut self) -> &mut [u8] {
                self.kind.bytes_mut(self.len)
            }
        }

        impl std::fmt::Debug for $loan {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Loan")
                    .field("len", &self.len)
                    .field("via", &self.kind.via())
                    .finish()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_buffer_reuses_a_spare_one_without_zeroing_what_it_held() {
        let spare = || Some(vec![9u8; 8]);
        assert_eq!(inline_buffer(None, 3, None), [0, 0, 0]);
        assert_eq!(inline_buffer(None, 2, Some(&[1, 2])), [1, 2]);
        assert_eq!(inline_buffer(spare(), 2, Some(&[1, 2])), [1, 2]);
        assert_eq!(
            inline_buffer(spare(), 3, None),
            [9, 9, 9],
            "shortened in place"
        );
        assert_eq!(
            inline_buffer(spare(), 10, None),
            [9, 9, 9, 9, 9, 9, 9, 9, 0, 0],
            "only the bytes it never held are zeroed"
        );
        let buf = vec![0u8; 16];
        let at = buf.as_ptr();
        let reused = inline_buffer(Some(buf), 16, Some(&[5; 16]));
        assert_eq!((reused.as_ptr(), &reused[..]), (at, &[5u8; 16][..]));
    }
}
