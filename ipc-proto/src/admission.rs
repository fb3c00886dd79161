//! Admission of accepted links: how many may be waiting for their handshake, for how long, and
//! when to stop accepting for a while.
//!
//! A connection to the hub address or to a node's data address costs the node a file
//! descriptor before it has said anything. The [`Member`](crate::Member) admits each accepted
//! link as *pending* until its first frame shows it speaks the protocol (a `Hello`, or the one
//! stats request a stranger may send), and bounds those links:
//!
//! - at most [`Limits::max_pending`] at once: a link accepted beyond that is closed at once;
//! - each for at most [`Limits::handshake_timeout`]: then it is closed;
//! - when accepting fails for lack of resources (the driver reports
//!   [`MemberInput::AcceptFailed`](crate::MemberInput::AcceptFailed): `EMFILE`, `ENFILE`), the
//!   member tells the driver to stop accepting for [`Limits::accept_backoff`] and then to
//!   resume, while every link it has goes on being served. Connections wait in the
//!   listeners' backlogs meanwhile; pending links expiring frees descriptors for them.
//!
//! ```text
//!   Accepted ──(pending < max)──► Pending ──Hello / stats request──► (admitted: forgotten here)
//!       │                            │
//!       └──(pending = max)──► closed └──handshake_timeout, or the link closes──► (forgotten)
//!
//!   Accepting ──AcceptFailed──► Paused(until) ──accept_backoff passed──► Accepting
//! ```
//!
//! Pure bookkeeping: the member decides what to close and reports it; this module holds the
//! deadlines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::ids::PeerId;
use crate::wire::Limits;

/// The pending links and the accept pause of one member.
#[derive(Debug)]
pub(crate) struct Admission {
    max_pending: usize,
    handshake_timeout: Duration,
    accept_backoff: Duration,
    /// Links accepted that have not completed their handshake, with their deadlines.
    pending: BTreeMap<PeerId, Instant>,
    /// Accepting is paused until then.
    paused_until: Option<Instant>,
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_pending: limits.max_pending,
            handshake_timeout: limits.handshake_timeout,
            accept_backoff: limits.accept_backoff,
            pending: BTreeMap::new(),
            paused_until: None,
        }
    }

    /// A link was accepted: `true` if it is admitted as pending, `false` if too many are.
    pub(crate) fn admit(&mut self, now: Instant, peer: PeerId) -> bool {
        if self.pending.len() >= self.max_pending {
            return false;
        }
        self.pending.insert(peer, now + self.handshake_timeout);
        true
    }

    /// `peer` completed its handshake, or its link is gone.
    pub(crate) fn forget(&mut self, peer: PeerId) {
        self.pending.remove(&peer);
    }

    /// [`Limits::max_pending`].
    pub(crate) fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// [`Limits::handshake_timeout`].
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The links that wait for their handshake.
    pub(crate) fn pending_peers(&self) -> Vec<PeerId> {
        self.pending.keys().copied().collect()
    }

    /// How many links wait for their handshake.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The pending links whose time is up at `now`, forgotten.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<PeerId> {
        let due: Vec<PeerId> = self
            .pending
            .iter()
            .filter(|&(_, &at)| at <= now)
            .map(|(&p, _)| p)
            .collect();
        for p in &due {
            self.pending.remove(p);
        }
        due
    }

    /// Accepting failed at `now`: pause it; `false` if it was paused already (a failure
    /// reported by a second listener in the same turn).
    pub(crate) fn pause(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some() {
            return false;
        }
        self.paused_until = Some(now + self.accept_backoff);
        true
    }

    /// Whether accepting is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused_until.is_some()
    }

    /// Whether a pause ends at `now` (it is then over).
    pub(crate) fn take_resume(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            return true;
        }
        false
    }

    /// The next deadline: a pending link's, or the end of a pause.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .copied()
            .chain(self.paused_until)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_pending: 2,
            handshake_timeout: Duration::from_secs(2),
            accept_backoff: Duration::from_millis(100),
            ..Limits::default()
        }
    }

    #[test]
    fn pending_links_are_capped_and_expire() {
        #[allow(clippy::disallowed_methods)] // test epoch
        let t0 = Instant::now();
        let mut a = Admission::new(&limits());
        assert!(a.admit(t0, PeerId(1)));
        assert!(a.admit(t0 + Duration::from_secs(1), PeerId(2)));
        assert!(!a.admit(t0, PeerId(3)), "the cap is reached");
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        a.forget(PeerId(2));
        assert!(a.admit(t0 + Duration::from_secs(1), PeerId(3)));
        assert!(a.take_expired(t0 + Duration::from_millis(1999)).is_empty());
        assert_eq!(a.take_expired(t0 + Duration::from_secs(2)), [PeerId(1)]);
        assert_eq!(a.pending(), 1);
        assert_eq!(a.pending_peers(), [PeerId(3)]);
        assert_eq!(a.take_expired(t0 + Duration::from_secs(9)), [PeerId(3)]);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_pause_ends_after_the_backoff_and_is_not_stacked() {
        #[allow(clippy::disallowed_methods)] // test epoch
        let t0 = Instant::now();
        let mut a = Admission::new(&limits());
        assert!(a.pause(t0));
        assert!(!a.pause(t0 + Duration::from_millis(50)), "already paused");
        assert!(a.is_paused());
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        assert!(!a.take_resume(t0 + Duration::from_millis(99)));
        assert!(a.take_resume(t0 + Duration::from_millis(100)));
        assert!(!a.is_paused());
        assert_eq!(a.poll_timeout(), None);
    }
}
