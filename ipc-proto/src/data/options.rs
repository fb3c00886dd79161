//! What publishers and subscriptions choose, the same in every driver.

use std::time::Duration;

use crate::wire::Policy;

/// How a publisher sends its payloads.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum SendMode {
    /// Inline up to the inline threshold; above it, pooled in a group open only to this uid,
    /// fresh in a group opened to others.
    #[default]
    Auto,
    /// Always in the frame (up to the inline threshold; larger payloads are refused).
    Inline,
    /// A fresh sealed memfd per message: immutability enforced by the kernel.
    Fresh,
    /// A reused pool segment per message: immutability by protocol (the publisher never
    /// rewrites a segment a subscriber holds); far faster for large payloads.
    Pooled,
}

/// The default largest inline payload: 16 KiB.
///
/// Measured with `ipc-pubsub bench payload` (std driver, cross-core, see the README's table):
/// inline beats pooled by 1.3-1.6x at 16 KiB (one subscriber and four alike), the two are even
/// at 32 KiB (0.7-1.2x, within the noise), and pooled wins from 64 KiB (1.2-1.8x). Pooled
/// messages pay a fixed cost per message (a notice, then a release back) that copying 16 KiB
/// twice does not reach.
pub const DEFAULT_INLINE_MAX: usize = 16 << 10;

/// How a publisher behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherOptions {
    /// How payloads travel. Default [`SendMode::Auto`].
    pub mode: SendMode,
    /// Largest inline payload. Default [`DEFAULT_INLINE_MAX`].
    pub inline_max: usize,
    /// How long a publisher waits for a pool segment to come back before sending the payload
    /// in a fresh segment instead. Default 100 ms. (A driver that must not block, such as the
    /// calloop one, does not wait.)
    pub pool_wait: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            mode: SendMode::Auto,
            inline_max: DEFAULT_INLINE_MAX,
            pool_wait: Duration::from_millis(100),
        }
    }
}

impl PublisherOptions {
    /// How a payload of `len` bytes travels; `private` says whether the group is open only to
    /// this node's uid (where pooled segments, whose immutability is by protocol, are the
    /// default above the inline threshold).
    pub fn mode_for(&self, len: usize, private: bool) -> SendMode {
        match self.mode {
            SendMode::Auto if len <= self.inline_max => SendMode::Inline,
            SendMode::Auto if private => SendMode::Pooled,
            SendMode::Auto => SendMode::Fresh,
            other => other,
        }
    }
}

/// The default largest payload a subscription takes: 64 MiB.
///
/// A publisher's fresh payload (or pooled message) larger than its subscriber's maximum is
/// refused before it is mapped, as a protocol violation: the subscriber closes the link and
/// counts it ([`GuardStats::oversized`](crate::wire::GuardStats::oversized)). Without a bound,
/// a sealed sparse memfd of any size costs its sender nothing and its reader that much memory.
pub const DEFAULT_MAX_PAYLOAD: u64 = 64 << 20;

/// How a subscription's queue behaves.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct SubscriptionOptions {
    /// What happens when the queue is full. Default: drop the oldest.
    pub policy: Policy,
    /// How many messages the queue holds. Default 64.
    pub depth: u32,
    /// The largest payload taken, in bytes; a larger one is refused before it is mapped (see
    /// [`DEFAULT_MAX_PAYLOAD`]). A node's subscriptions to one topic take up to the largest of
    /// their maximums. Default [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: u64,
    /// How long a receiving thread polls for the next message before it sleeps. A driver
    /// that reads its links' shared-memory rings on the receiving thread (the std driver; the
    /// calloop driver ignores it) spins on them, and publishers push without waking anyone:
    /// the lowest latency, for a CPU core kept busy while waiting (up to `spin` per receive
    /// with no message). While threads spin, and for a moment after (the std driver: up to
    /// the spin, or 1 ms if longer), the rings are not parked and messages of the node's
    /// other subscriptions on the same links are read by a spinning thread or by the I/O
    /// thread within that moment. Local to the driver: publishers are not told.
    ///
    /// Zero (the default) leaves it to the driver. The std driver then spins for up to 10 µs,
    /// and only while that finds messages: a stream whose messages come within 10 µs of each
    /// other is read without a sleep and a wakeup per message; after a spin in vain it sleeps
    /// at once, trying again once in 16 receives. An idle subscription, a sparse stream, or a
    /// request whose reply takes longer than that, idles at 0 % CPU.
    pub spin: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            policy: Policy::DropOldest,
            depth: 64,
            max_payload: DEFAULT_MAX_PAYLOAD,
            spin: Duration::ZERO,
        }
    }
}

impl SubscriptionOptions {
    /// Lossless: publishers wait up to `timeout` for room.
    pub fn block(timeout: Duration) -> Self {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        Self {
            policy: Policy::Block { timeout_ms },
            ..Self::default()
        }
    }

    /// Keeps the newest `depth` messages.
    pub fn drop_oldest(depth: u32) -> Self {
        Self {
            policy: Policy::DropOldest,
            depth,
            ..Self::default()
        }
    }

    /// Keeps the oldest `depth` messages.
    pub fn drop_newest(depth: u32) -> Self {
        Self {
            policy: Policy::DropNewest,
            depth,
            ..Self::default()
        }
    }

    /// Sets [`max_payload`](Self::max_payload).
    pub fn max_payload(mut self, bytes: u64) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`spin`](Self::spin): poll up to `spin` for each message before sleeping.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The terms a subscriber states to its publishers.
    pub fn terms(&self) -> Terms {
        Terms {
            policy: self.policy,
            depth: self.depth.max(1),
            max_payload: self.max_payload,
        }
    }
}

/// What a node subscribes to, and how its queue is to be treated.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Terms {
    /// What to do when the queue is full.
    pub policy: Policy,
    /// How many messages the queue holds.
    pub depth: u32,
    /// The largest payload the subscriber takes (checked by the subscriber, before mapping;
    /// not sent to publishers). Default [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: u64,
}

impl Default for Terms {
    fn default() -> Self {
        Self {
            policy: Policy::DropOldest,
            depth: 64,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Terms {
    /// What a publisher assumes of a subscriber until it states its terms: hold back (1 s at
    /// most) rather than drop, so that the first messages of a `Block` subscription are not
    /// lost while its terms are on their way.
    pub const UNKNOWN: Self = Self {
        policy: Policy::Block { timeout_ms: 1000 },
        depth: 64,
        max_payload: DEFAULT_MAX_PAYLOAD,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_by_size_and_privacy() {
        let o = PublisherOptions::default();
        assert_eq!(o.mode_for(0, true), SendMode::Inline);
        assert_eq!(o.mode_for(DEFAULT_INLINE_MAX, false), SendMode::Inline);
        assert_eq!(o.mode_for(DEFAULT_INLINE_MAX + 1, true), SendMode::Pooled);
        assert_eq!(o.mode_for(DEFAULT_INLINE_MAX + 1, false), SendMode::Fresh);
        let fresh = PublisherOptions {
            mode: SendMode::Fresh,
            ..PublisherOptions::default()
        };
        assert_eq!(fresh.mode_for(1, true), SendMode::Fresh);
    }

    #[test]
    fn terms_never_have_zero_depth() {
        let t = SubscriptionOptions::drop_newest(0).terms();
        assert_eq!(t.depth, 1);
        assert_eq!(t.policy, Policy::DropNewest);
        let b = SubscriptionOptions::block(Duration::from_secs(u64::MAX)).terms();
        assert_eq!(
            b.policy,
            Policy::Block {
                timeout_ms: u32::MAX
            }
        );
    }
}
