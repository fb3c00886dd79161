//! Deadlines of a machine, one slot per [`Timer`] kind.

use std::time::Instant;

/// The kinds of deadline a machine keeps; [`poll_timeout`](crate::Hub::poll_timeout) is the
/// earliest of them and `next_timer` tells which one it is.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Timer {
    /// Send the next heartbeat.
    Heartbeat,
    /// Check who has been silent for longer than the keepalive timeout.
    Keepalive,
    /// A node of an inherited history has not reconnected within the grace period.
    Grace,
    /// Retry reaching the hub after a failed attempt.
    Backoff,
    /// A new hub's document host may stop gathering the nodes' document states.
    DocGather,
}

impl Timer {
    const ALL: [Self; 5] = [
        Self::Heartbeat,
        Self::Keepalive,
        Self::Grace,
        Self::Backoff,
        Self::DocGather,
    ];

    const fn index(self) -> usize {
        match self {
            Self::Heartbeat => 0,
            Self::Keepalive => 1,
            Self::Grace => 2,
            Self::Backoff => 3,
            Self::DocGather => 4,
        }
    }
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }

    /// Whether `timer` is set and due at `now`; a due timer is cleared.
    pub(crate) fn expire(&mut self, timer: Timer, now: Instant) -> bool {
        match self.slots[timer.index()] {
            Some(at) if at <= now => {
                self.slots[timer.index()] = None;
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline and its kind.
    pub(crate) fn next(&self) -> Option<(Instant, Timer)> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).map(|at| (at, t)))
            .min_by_key(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn next_is_the_earliest_and_expire_clears_only_due_timers() {
        #[allow(clippy::disallowed_methods)] // test epoch
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Grace, t0 + Duration::from_millis(200));
        t.set(Timer::Heartbeat, t0 + Duration::from_millis(100));
        assert_eq!(
            t.next(),
            Some((t0 + Duration::from_millis(100), Timer::Heartbeat))
        );
        assert!(!t.expire(Timer::Grace, t0 + Duration::from_millis(150)));
        assert!(t.expire(Timer::Heartbeat, t0 + Duration::from_millis(150)));
        assert_eq!(
            t.next(),
            Some((t0 + Duration::from_millis(200), Timer::Grace))
        );
        t.stop(Timer::Grace);
        assert_eq!(t.next(), None);
    }
}
