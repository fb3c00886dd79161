//! A monotonic `timerfd`: a deadline as a readable fd, for a loop that waits on fds only.
//!
//! The std driver sleeps in [`Poller::wait`](crate::poll::Poller::wait) with a timeout and
//! needs no timer fd; the calloop driver puts this fd in its node's own epoll set, which
//! calloop watches as one source.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

use crate::retry_eintr;

/// A non-blocking, close-on-exec `CLOCK_MONOTONIC` timerfd, armed for the earliest deadline
/// it was given.
///
/// It is readable from the moment the deadline passes until [`Timer::clear`].
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Timer {
    /// A new, unarmed timer.
    pub fn new() -> io::Result<Self> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd, armed: None })
    }

    /// Clears the expiration count after the timer fired; the timer is unarmed until the
    /// next [`Timer::arm`].
    pub fn clear(&mut self) {
        let mut buf = [0u8; 8];
        // EAGAIN: it had not fired, which is fine too.
        let _ = retry_eintr(|| rustix::io::read(&self.fd, &mut buf));
        self.armed = None;
    }

    /// Arms the timer for `deadline` (`None` leaves it as it is). The timer only ever moves
    /// earlier, or to a new deadline after it fired and was cleared, so most calls make no
    /// system call: the caller must treat an early wakeup as harmless (protocol machines
    /// ignore early timeouts).
    pub fn arm(&mut self, now: Instant, deadline: Option<Instant>) -> io::Result<()> {
        let Some(deadline) = deadline else {
            return Ok(());
        };
        if self.armed.is_some_and(|a| a <= deadline) {
            return Ok(());
        }
        // A zero `it_value` disarms: fire in at least a nanosecond.
        let after = deadline
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(after.subsec_nanos()),
            },
        };
        rustix::time::timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        self.armed = Some(deadline);
        Ok(())
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{Events, Interest, Poller, Token};
    use crate::testutil::shared;

    #[test]
    fn fires_at_the_earliest_deadline_and_clears() {
        let _g = shared();
        let poller = Poller::new().expect("poller");
        let mut timer = Timer::new().expect("timer");
        poller
            .add(&timer, Token(1), Interest::READABLE)
            .expect("add");
        let mut events = Events::with_capacity(2);
        let now = Instant::now();
        timer.arm(now, None).expect("arm nothing");
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            0
        );
        timer
            .arm(now, Some(now + Duration::from_secs(60)))
            .expect("arm late");
        timer
            .arm(now, Some(now + Duration::from_millis(5)))
            .expect("arm earlier");
        let n = poller
            .wait(&mut events, Some(Duration::from_secs(10)))
            .expect("wait");
        assert_eq!(n, 1);
        assert!(now.elapsed() >= Duration::from_millis(5));
        assert!(
            now.elapsed() < Duration::from_secs(10),
            "the earlier deadline won"
        );
        timer.clear();
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            0
        );
        // A deadline in the past fires at once.
        timer.arm(Instant::now(), Some(now)).expect("arm past");
        let n = poller
            .wait(&mut events, Some(Duration::from_secs(10)))
            .expect("wait");
        assert_eq!(n, 1);
        let flags = rustix::io::fcntl_getfd(&timer).expect("F_GETFD");
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }
}
