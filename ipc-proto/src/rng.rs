//! Seeded randomness: every random choice of a machine comes from here.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

use crate::ids::{NodeId, Uid};

/// A reproducible random source, seeded by the driver (from the OS) or by a test.
///
/// ChaCha8 because its output is specified and stable across versions, unlike `StdRng`.
#[derive(Clone, Debug)]
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A non-zero value, for ids and uids.
    fn non_zero(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }

    pub(crate) fn uid(&mut self) -> Uid {
        Uid::new(self.non_zero()).expect("non_zero never returns 0")
    }

    pub(crate) fn node_id(&mut self) -> NodeId {
        NodeId::new(self.non_zero()).expect("non_zero never returns 0")
    }

    /// A salt for a hub's epoch.
    pub(crate) fn salt(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniformly distributed value in `0..=max`.
    pub(crate) fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        // Modulo bias is irrelevant for jitter; the bound is tiny next to 2^64.
        self.next_u64() % (max + 1)
    }
}
