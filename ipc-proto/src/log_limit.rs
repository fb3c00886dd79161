//! Rate-limited logging of what peers do, for drivers.
//!
//! A hostile peer decides how often a node refuses it: 2,000 refused connections must not
//! write 2,000 warnings. A [`LogLimit`] lets the first [`burst`](LogLimit::new) lines of an
//! interval through and counts the rest; once the interval is over, the driver logs one
//! summary ("… and 1998 more in the last 10 s"). Like the machines, it reads no clock: the
//! driver passes `now`, and wakes up at [`poll_timeout`](LogLimit::poll_timeout) to write the
//! summary of a burst that ended.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ipc_proto::LogLimit;
//!
//! # #[allow(clippy::disallowed_methods)]
//! let t0 = Instant::now();
//! let mut limit = LogLimit::new(2, Duration::from_secs(10));
//! let logged = (0..2000).filter(|_| limit.allow(t0)).count();
//! assert_eq!(logged, 2);
//! assert_eq!(limit.take_summary(t0), None, "the interval is not over");
//! assert_eq!(limit.take_summary(t0 + Duration::from_secs(10)), Some(1998));
//! ```

use std::time::{Duration, Instant};

/// The first lines of each interval, then a count: rate-limited logging of what peers do.
///
/// A hostile peer decides how often a node refuses it. The first `burst` lines of an interval
/// go through, the rest are counted; once the interval is over the driver logs one summary.
#[derive(Clone, Debug)]
pub struct LogLimit {
    burst: u32,
    interval: Duration,
    /// When the current interval started.
    since: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `burst` lines per `interval`.
    pub const fn new(burst: u32, interval: Duration) -> Self {
        Self {
            burst,
            interval,
            since: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether to log one more line at `now`; if not, it is counted for the summary. Call
    /// [`take_summary`](Self::take_summary) first, so the summary of the last interval comes
    /// before the lines of the next.
    pub fn allow(&mut self, now: Instant) -> bool {
        let over = self.since.is_none_or(|s| now >= s + self.interval);
        if over && self.suppressed == 0 {
            self.since = Some(now);
            self.logged = 0;
        }
        if self.logged < self.burst && self.suppressed == 0 {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// How many lines were held back in an interval that is over at `now`, once.
    pub fn take_summary(&mut self, now: Instant) -> Option<u64> {
        let over = self.since.is_some_and(|s| now >= s + self.interval);
        if !over || self.suppressed == 0 {
            return None;
        }
        let n = std::mem::take(&mut self.suppressed);
        self.since = None;
        self.logged = 0;
        Some(n)
    }

    /// When a summary is due: the end of an interval with lines held back.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.suppressed > 0)
            .then_some(self.since)
            .flatten()
            .map(|s| s + self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_summary_per_interval() {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = LogLimit::new(3, 10 * s);
        assert_eq!(l.poll_timeout(), None);
        let logged = (0..5).filter(|_| l.allow(t0)).count();
        assert_eq!(logged, 3);
        assert_eq!(l.poll_timeout(), Some(t0 + 10 * s));
        // Within the interval: still held back.
        assert!(!l.allow(t0 + 9 * s));
        assert_eq!(l.take_summary(t0 + 9 * s), None);
        // After it, even before the summary is taken, lines wait for it.
        assert!(!l.allow(t0 + 10 * s));
        assert_eq!(l.take_summary(t0 + 10 * s), Some(4));
        assert_eq!(l.take_summary(t0 + 10 * s), None);
        assert_eq!(l.poll_timeout(), None);
        // A new interval starts with the next line.
        assert!(l.allow(t0 + 11 * s));
        assert_eq!(l.poll_timeout(), None, "nothing held back");
        // A quiet interval needs no summary; the next burst is let through.
        let logged = (0..3).filter(|_| l.allow(t0 + 30 * s)).count();
        assert_eq!(logged, 3);
    }
}
