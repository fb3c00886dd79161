//! What publishers and subscriptions choose, the same in every driver.

use std::time::Duration;

use crate::ring::link::LINK_INLINE_MAX;
use crate::wire::Policy;

/// How a publisher sends its payloads.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum SendMode {
    /// Inline up to the inline threshold; above it, pooled in a group open only to this uid,
    /// fresh in a group opened to others. In a group open only to this uid whose node has
    /// shared-memory rings, the threshold is at most what a ring carries inline
    /// ([`LINK_INLINE_MAX`]): see [`PublisherOptions::auto_inline_max`].
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
/// Measured with `ipc-pubsub bench payload` (std driver, cross-core, see the README's table),
/// before the data links had rings: inline beat pooled by 1.3-1.6x at 16 KiB (one subscriber
/// and four alike), the two were even at 32 KiB (0.7-1.2x, within the noise), and pooled won
/// from 64 KiB (1.2-1.8x). Pooled messages pay a fixed cost per message (a notice, then a
/// release back) that copying 16 KiB twice does not reach. It still holds without rings (at
/// 8 and 16 KiB, inline 270 k and 190 k messages per second, pooled 86 k and 87 k), and in a
/// group opened to others, where the alternative is a fresh memfd per message. With rings, an
/// inline payload larger than a ring's slot takes the socket while pooled notices take the
/// ring, and pooled wins from just above it: see [`PublisherOptions::auto_inline_max`].
pub const DEFAULT_INLINE_MAX: usize = 16 << 10;

/// What a publisher's node offers its payloads besides the inline record, for
/// [`PublisherOptions::mode_for`].
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Paths {
    /// The group is open only to this node's uid: pooled segments, whose immutability is by
    /// protocol, are allowed by default.
    pub private: bool,
    /// The node's data links take shared-memory rings (the drivers' default), which carry
    /// inline payloads of up to [`LINK_INLINE_MAX`] bytes and pooled notices.
    pub rings: bool,
}

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
    /// How a payload of `len` bytes travels from a node that offers `paths`.
    ///
    /// ```
    /// use ipc_proto::data::{Paths, PublisherOptions, SendMode};
    ///
    /// let o = PublisherOptions::default();
    /// let private = Paths { private: true, rings: true };
    /// assert_eq!(o.mode_for(4096, private), SendMode::Inline);
    /// assert_eq!(o.mode_for(8192, private), SendMode::Pooled);
    /// // Without rings, or in a group opened to others, inline up to `inline_max`.
    /// assert_eq!(o.mode_for(8192, Paths { rings: false, ..private }), SendMode::Inline);
    /// let open = Paths { private: false, rings: true };
    /// assert_eq!(o.mode_for(8192, open), SendMode::Inline);
    /// assert_eq!(o.mode_for(o.inline_max + 1, open), SendMode::Fresh);
    /// ```
    pub fn mode_for(&self, len: usize, paths: Paths) -> SendMode {
        match self.mode {
            SendMode::Auto if len <= self.auto_inline_max(paths) => SendMode::Inline,
            SendMode::Auto if paths.private => SendMode::Pooled,
            SendMode::Auto => SendMode::Fresh,
            other => other,
        }
    }

    /// The largest payload [`SendMode::Auto`] sends inline from a node that offers `paths`:
    /// [`Self::inline_max`], but at most [`LINK_INLINE_MAX`] where pooled is the alternative and
    /// the links have rings. An inline payload larger than a ring's slot takes the link's
    /// socket (two copies through the kernel and a wakeup per record), a pooled notice the ring.
    /// Measured between two pinned processes (std driver, `Block` depth 8, 3 runs each, medians):
    /// inline 302 k, 271 k, 245 k and 190 k messages per second at 6, 8, 12 and 16 KiB, pooled
    /// 435 k, 431 k, 376 k and 344 k; at 4 KiB, in the ring, inline 1.36 M and pooled 468 k.
    /// The calloop driver alike (`vs_std`'s echo with a window of 8, 5 reps, medians): at 8 and
    /// 16 KiB inline 0.76 and 1.36 GB/s, pooled 1.07 and 1.94.
    pub fn auto_inline_max(&self, paths: Paths) -> usize {
        if paths.private && paths.rings {
            self.inline_max.min(LINK_INLINE_MAX as usize)
        } else {
            self.inline_max
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
    /// that reads its links' shared-memory rings on the receiving thread (the std driver's
    /// `recv`; the calloop driver's loop, after a turn that delivered messages) spins on
    /// them, and publishers push without waking anyone: the lowest latency, for a CPU core
    /// kept busy while waiting (up to the spin per receive with no message). While threads
    /// spin, and for a moment after (the std driver: up to the spin, or 1 ms if longer), the
    /// rings are not parked and messages of the node's other subscriptions on the same links
    /// are read by a spinning thread or by the I/O thread within that moment. Local to the
    /// driver: publishers are not told. `Duration::MAX` polls until the message comes (a
    /// driver adds it to the clock saturating: `ipc_driver_core::later`).
    ///
    /// `Some(Duration::ZERO)` never polls: every receive that finds no message sleeps, and
    /// the publisher's next message wakes it (for a power-sensitive application, or to
    /// measure the wakeup path). A calloop node's loop serves all its subscriptions: it
    /// polls as long as the most eager of them asks (a spin of its own, then the driver's
    /// choice, then never).
    ///
    /// `None` (the default) leaves it to the driver: both drivers then poll for up to 10 µs
    /// (`ipc_driver_core::RECV_SPIN`), and only while that finds messages (the std driver's
    /// receiving thread before it sleeps; the calloop driver's loop after a turn that
    /// delivered messages): a stream whose messages come within 10 µs of each other is read
    /// without a sleep and a wakeup per message; after a spin in vain the receiver sleeps at
    /// once, trying again once in 16 times. A request and its reply sent back to back may
    /// be caught too, and then both ends poll while the exchange goes on (about a
    /// microsecond per round trip instead of two wakeups); a pause of over 10 µs ends it.
    /// Both also spin for up to 100 µs while a publisher says it is writing a pooled message
    /// for this node (the ring's `writing` hint, see [`ring`](crate::ring)), again only while
    /// such spins find the message. An idle subscription, a sparse stream,
    /// or a request whose reply takes longer than that (an inline reply sets no hint),
    /// idles at 0 % CPU.
    pub spin: Option<Duration>,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            policy: Policy::DropOldest,
            depth: 64,
            max_payload: DEFAULT_MAX_PAYLOAD,
            spin: None,
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

    /// Sets [`spin`](Self::spin): poll up to `spin` for each message before sleeping;
    /// `Duration::ZERO` never polls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipc_proto::data::SubscriptionOptions;
    ///
    /// // Control messages at a high rate: poll for the next one for up to 50 µs.
    /// let fast = SubscriptionOptions::block(Duration::from_secs(1)).spin(Duration::from_micros(50));
    /// assert_eq!(fast.spin, Some(Duration::from_micros(50)));
    /// // Never poll: every receive without a message sleeps.
    /// let frugal = SubscriptionOptions::default().spin(Duration::ZERO);
    /// assert_eq!(frugal.spin, Some(Duration::ZERO));
    /// // The driver's choice (see the field).
    /// assert_eq!(SubscriptionOptions::default().spin, None);
    /// ```
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = Some(spin);
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
    fn auto_mode_by_size_privacy_and_rings() {
        let o = PublisherOptions::default();
        let ring = LINK_INLINE_MAX as usize;
        for rings in [false, true] {
            let (private, open) = (
                Paths {
                    private: true,
                    rings,
                },
                Paths {
                    private: false,
                    rings,
                },
            );
            assert_eq!(o.mode_for(0, private), SendMode::Inline);
            assert_eq!(o.mode_for(ring, private), SendMode::Inline);
            assert_eq!(o.mode_for(DEFAULT_INLINE_MAX, open), SendMode::Inline);
            assert_eq!(
                o.mode_for(DEFAULT_INLINE_MAX + 1, private),
                SendMode::Pooled
            );
            assert_eq!(o.mode_for(DEFAULT_INLINE_MAX + 1, open), SendMode::Fresh);
        }
        // Above a ring's slot, pooled where the links have rings and pooled is allowed.
        let private = |rings| Paths {
            private: true,
            rings,
        };
        assert_eq!(o.mode_for(ring + 1, private(true)), SendMode::Pooled);
        assert_eq!(o.mode_for(ring + 1, private(false)), SendMode::Inline);
        // A smaller threshold of the publisher's own still holds.
        let small = PublisherOptions {
            inline_max: 100,
            ..PublisherOptions::default()
        };
        assert_eq!(small.auto_inline_max(private(true)), 100);
        assert_eq!(small.mode_for(101, private(false)), SendMode::Pooled);
        // So does a mode chosen outright.
        let fresh = PublisherOptions {
            mode: SendMode::Fresh,
            ..PublisherOptions::default()
        };
        assert_eq!(fresh.mode_for(1, private(true)), SendMode::Fresh);
        let inline = PublisherOptions {
            mode: SendMode::Inline,
            ..PublisherOptions::default()
        };
        assert_eq!(
            inline.mode_for(DEFAULT_INLINE_MAX, private(true)),
            SendMode::Inline
        );
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
