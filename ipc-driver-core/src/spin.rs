//! When a receiver without a spin of its own polls the rings before it sleeps: both drivers'
//! default ([`SubscriptionOptions::spin`] `None`), decided the same way.
//!
//! [`SubscriptionOptions::spin`]: ipc_proto::data::SubscriptionOptions::spin

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// How long a receiver without a spin of its own polls the rings for the next message before
/// it sleeps, while messages come that soon ([`AdaptiveSpin`]): the std driver's receiving
/// thread in `recv`, the calloop driver's loop after a turn that delivered messages. A stream
/// whose next message is microseconds away otherwise costs the publisher a wakeup write and
/// the receiver a sleep and a wakeup (an interrupt from the other core: several microseconds
/// of CPU each on a VM) per message.
///
/// Measured with the std driver between two pinned processes, `Block` depth 8, pooled: 1.4x
/// the messages per second at 4 KiB, 1.2x at 64 KiB, 1 MiB level (its messages come further
/// apart). A longer spin (50 µs) gained more (3.3x at 4 KiB) but caught the replies of a
/// blocking ping-pong more often, which then spun at both ends for good. 10 µs catches them
/// too, less often: a request and its reply sent back to back, each side answering within
/// 10 µs, become two polling cores once both sides happen to spin at once (a spin that pays
/// goes on; one in vain makes the next 15 waits sleep at once), and stay so while the
/// exchange goes on, each round trip then about a microsecond instead of two wakeups
/// (`bench payload`'s blocking `pubsub.rtt` between two processes, 2026-12-07: 2 of 5
/// repetitions at 0.98 and 1.39 µs, the others 41.5-54.4 µs; `vs_std`'s two threads of one
/// process more often). Any pause of over 10 µs on either side, a reply that takes longer to
/// make or a request that waits for anything, ends it, and an idle subscription never polls.
pub const RECV_SPIN: Duration = Duration::from_micros(10);

/// How long a receiver without a spin of its own polls the rings in all, past [`RECV_SPIN`]
/// (or instead of it, after spins in vain), while a publisher says it fills a message for
/// this node: a pooled loan sets its links' `writing` hint ([`ipc_proto::ring`],
/// [`Links::writing`](crate::Links::writing)), which its send clears. The message is on its
/// way, and a sleep would cost the publisher a wakeup write (about 15 µs of its CPU per
/// message on this VM, a sixth of a 1 MiB message's time) and the receiver a sleep and a
/// wakeup. Unlike a longer [`RECV_SPIN`], it does not catch inline replies (a 64 B request
/// and its reply stay two sleeps and two wakeups), nor spin while nobody writes. Whether it
/// spins is its own [`AdaptiveSpin`]: a publisher that holds its loans longer (filled by a
/// device, say) makes its subscribers sleep after one spin in vain. Both drivers' publishers
/// set the hint (the calloop driver's for loans of the loop's own `Node`, not of a
/// `NodeHandle` on another thread), and both drivers' receivers poll for it: the std
/// driver's receiving thread, the calloop driver's loop after a turn that delivered
/// messages.
///
/// Measured with the std driver between two pinned processes (`bench payload --only
/// pubsub.pooled`, `Block` depth 8, two alternated runs of 3 repetitions each), messages per
/// second before → after: 4 KiB 303-399 k → 386-463 k, 16 KiB 250-290 k → 301-310 k, 32 KiB
/// 208-229 k → 239-242 k, 64 KiB 140-143 k → 169-173 k, 1 MiB and 16 MiB level; 64 B round
/// trip and inline streams level.
pub const WRITING_SPIN: Duration = Duration::from_micros(100);

/// Every this many waits, one spins even when the last spin found nothing: the other side
/// may keep up again ([`AdaptiveSpin`]).
pub const SPIN_PROBE: u32 = 16;

/// Whether a receiver (or a publisher waiting for room) about to sleep spins first: only
/// while spinning finds what it waits for; after a spin in vain, one wait in [`SPIN_PROBE`]
/// spins, the others sleep at once. Never while idle: it is asked once per wait. Shared by the
/// threads of one purpose (any topic, any thread), which see the same peers; relaxed atomics,
/// as a wrong guess costs one spin or one sleep.
///
/// ```
/// use ipc_driver_core::{AdaptiveSpin, SPIN_PROBE};
///
/// let spin = AdaptiveSpin::paying();
/// assert!(spin.spins());
/// spin.found(false); // in vain: the next waits sleep at once
/// let spun = (0..SPIN_PROBE).filter(|_| spin.spins()).count();
/// assert_eq!(spun, 1);
/// ```
#[derive(Debug, Default)]
pub struct AdaptiveSpin {
    pays: AtomicBool,
    since: AtomicU32,
}

impl AdaptiveSpin {
    /// One whose first wait spins: a stream may be under way. (A default one sleeps at its
    /// first wait.)
    pub fn paying() -> Self {
        Self {
            pays: AtomicBool::new(true),
            since: AtomicU32::new(0),
        }
    }

    /// Whether this wait spins.
    pub fn spins(&self) -> bool {
        let spin = self.pays.load(Ordering::Relaxed)
            || self.since.load(Ordering::Relaxed) + 1 >= SPIN_PROBE;
        if spin {
            self.since.store(0, Ordering::Relaxed);
        } else {
            self.since.fetch_add(1, Ordering::Relaxed);
        }
        spin
    }

    /// A spin ended: it found what it waited for, or not.
    pub fn found(&self, found: bool) {
        self.pays.store(found, Ordering::Relaxed);
    }
}

/// The two adaptive decisions of a receiver without a spin of its own, shared by both
/// drivers: whether a wait polls for the next message (up to [`RECV_SPIN`]), and whether it
/// polls on for one a publisher says it is writing (up to [`WRITING_SPIN`]); each an
/// [`AdaptiveSpin`] fed by the waits that tried it ([`AdaptiveWait`]). A std subscription
/// keeps one (its receives are its waits); a calloop node's source keeps one (the waits from
/// one message to the next while its loop polls).
#[derive(Debug)]
pub struct AdaptiveWaits {
    next: AdaptiveSpin,
    writing: AdaptiveSpin,
}

impl Default for AdaptiveWaits {
    /// Both paying: the first wait polls.
    fn default() -> Self {
        Self {
            next: AdaptiveSpin::paying(),
            writing: AdaptiveSpin::paying(),
        }
    }
}

impl AdaptiveWaits {
    /// A wait about to sleep: it polls for the next message if such waits pay; else, if a
    /// publisher says it is writing one for this node (`peer_writing`, asked only then) and
    /// such waits pay, only for that one; else it sleeps at once (`None`).
    pub fn start(&self, peer_writing: impl FnOnce() -> bool) -> Option<AdaptiveWait> {
        if self.next.spins() {
            Some(AdaptiveWait::for_next())
        } else if peer_writing() && self.writing.spins() {
            Some(AdaptiveWait {
                plain: false,
                hinted: true,
                looked_again: false,
            })
        } else {
            None
        }
    }
}

/// One wait of a receiver without a spin of its own ([`AdaptiveWaits::start`]): it polls
/// for [`Self::window`] from its start, then on while a publisher says it writes a message
/// for this node ([`Self::past_window`]), and is counted when it ends ([`Self::end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveWait {
    /// It polls for the next message ([`RECV_SPIN`]).
    plain: bool,
    /// It polls (or polled) past that for a message being written.
    hinted: bool,
    /// It looked once more after the hint it polled for was gone.
    looked_again: bool,
}

/// What a wait does once its window is over ([`AdaptiveWait::past_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastWindow {
    /// A publisher says it writes the message: poll on.
    Poll,
    /// The hint it polled for is gone: most likely the push that cleared it brought the
    /// message, after the last look at the rings. One more round of looks, rather than a
    /// sleep and a wake (and a wait counted as in vain).
    LookAgain,
    /// It ends in vain: count it ([`AdaptiveWait::end`]).
    End,
}

impl AdaptiveWait {
    /// A wait for the next message; the one after a message, whose successor may come as
    /// soon, hint or not (a publisher takes its next loan a moment after its send).
    pub fn for_next() -> Self {
        Self {
            plain: true,
            hinted: false,
            looked_again: false,
        }
    }

    /// How long it polls from its start before a hint decides: [`RECV_SPIN`], or nothing if
    /// it polls only for a message being written.
    pub fn window(&self) -> Duration {
        if self.plain {
            RECV_SPIN
        } else {
            Duration::ZERO
        }
    }

    /// Whether it polls (or polled) past its window for a message being written.
    pub fn hinted(&self) -> bool {
        self.hinted
    }

    /// Its window is over: whether it polls on. `in_time`: within [`WRITING_SPIN`] of its
    /// start (and any bound of the caller's); `peer_writing`: a publisher says it writes a
    /// message for this node. The first time it would poll on, `waits` says whether such
    /// waits pay.
    pub fn past_window(
        &mut self,
        waits: &AdaptiveWaits,
        in_time: bool,
        peer_writing: bool,
    ) -> PastWindow {
        if in_time && peer_writing && (self.hinted || waits.writing.spins()) {
            self.hinted = true;
            PastWindow::Poll
        } else if self.hinted && !peer_writing && !self.looked_again {
            self.looked_again = true;
            PastWindow::LookAgain
        } else {
            PastWindow::End
        }
    }

    /// It ended, with the message (`got`) or not: its window paid if the message came
    /// within it, the hint if it came after.
    pub fn end(self, waits: &AdaptiveWaits, got: bool) {
        if self.plain {
            waits.next.found(got && !self.hinted);
        }
        if self.hinted {
            waits.writing.found(got);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins while spinning finds what it waits for; after a spin in vain, one wait in
    /// `SPIN_PROBE` spins, the others sleep at once.
    /// A wait found by its window says its window pays; one found only by the hint says the
    /// hint pays and the window does not; one in vain says neither pays.
    #[test]
    fn a_wait_counts_what_paid() {
        let waits = AdaptiveWaits::default();
        let mut wait = waits.start(|| unreachable!()).expect("paying: it polls");
        assert_eq!(wait.window(), RECV_SPIN);
        // Past the window with the hint set: it polls on.
        assert_eq!(wait.past_window(&waits, true, true), PastWindow::Poll);
        assert!(wait.hinted());
        wait.end(&waits, true);
        // The window did not pay: the next wait polls only for a hint.
        let wait = waits.start(|| true).expect("the hint pays");
        assert_eq!(wait.window(), Duration::ZERO);
        assert!(wait.hinted());
        assert!(waits.start(|| false).is_none(), "no hint: it sleeps");
        // The hint gone: one more look, then the end.
        let mut wait = waits.start(|| true).expect("the hint pays");
        assert_eq!(wait.past_window(&waits, true, false), PastWindow::LookAgain);
        assert_eq!(wait.past_window(&waits, true, false), PastWindow::End);
        wait.end(&waits, false);
        // Neither pays now: sleep, but for a probe in SPIN_PROBE.
        let polled = (0..SPIN_PROBE)
            .filter(|_| waits.start(|| true).is_some())
            .count();
        assert_eq!(polled, 1);
        // Out of time with the hint still set: the end, no second look.
        let mut wait = AdaptiveWait::for_next();
        assert_eq!(wait.past_window(&waits, false, true), PastWindow::End);
    }

    #[test]
    fn an_adaptive_spin_spins_only_while_it_pays() {
        let idle = AdaptiveSpin::default();
        assert!(!idle.spins(), "a default one sleeps at its first wait");
        let spin = AdaptiveSpin::paying();
        assert!(spin.spins(), "a paying one spins at its first wait");
        spin.found(true);
        assert!(spin.spins() && spin.spins(), "while it pays");
        spin.found(false);
        let spun: Vec<usize> = (0..2 * SPIN_PROBE as usize)
            .filter(|_| spin.spins())
            .collect();
        let probe = SPIN_PROBE as usize;
        assert_eq!(spun, [probe - 1, 2 * probe - 1], "one probe in {probe}");
        spin.found(true);
        assert!(spin.spins(), "a probe that paid: spinning again");
    }
}
