//! Readiness: a level-triggered epoll wrapper with [`Token`]s, and an eventfd [`Waker`].
//!
//! # Level-triggered
//! Registrations are level-triggered: an fd is reported on every [`Poller::wait`] for as long
//! as it is ready, so the I/O thread may stop reading or writing at any point (fairness,
//! budgets) without losing a wakeup. The price is that interest in writability must be
//! removed ([`Poller::modify`]) once the outbox is empty, or `wait` returns at once forever.
//!
//! # Hangups and errors
//! `EPOLLHUP` and `EPOLLERR` are always reported, even with no interest registered. A readable
//! registration also asks for `EPOLLRDHUP`. None of them means "close now": records the peer
//! sent before leaving are still queued, so on any of them keep calling
//! [`recv_record`](crate::socket::recv_record) until it returns
//! [`Recv::Closed`](crate::socket::Recv::Closed), then [`Poller::delete`] and drop the fd.
//!
//! # Registration and closing
//! epoll tracks open file descriptions, not fd numbers: delete a registration before dropping
//! its fd. An fd that was `dup`ed (or sent to another process) stays registered and keeps
//! reporting events after our copy is closed, with a token we no longer recognise.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;
use rustix::time::Timespec;

use crate::retry_eintr;

/// An opaque value registered with an fd and reported back with its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// Which readiness to report for a registered fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    readable: bool,
    writable: bool,
}

impl Interest {
    /// Report readability (and peer hangup).
    pub const READABLE: Self = Self {
        readable: true,
        writable: false,
    };
    /// Report writability.
    pub const WRITABLE: Self = Self {
        readable: false,
        writable: true,
    };
    /// Report both.
    pub const BOTH: Self = Self {
        readable: true,
        writable: true,
    };
    /// Report only what epoll always reports: hangup and error.
    pub const NONE: Self = Self {
        readable: false,
        writable: false,
    };

    /// Whether readability is of interest.
    pub const fn is_readable(self) -> bool {
        self.readable
    }

    /// Whether writability is of interest.
    pub const fn is_writable(self) -> bool {
        self.writable
    }

    fn flags(self) -> EventFlags {
        let mut flags = EventFlags::empty();
        if self.readable {
            flags |= EventFlags::IN | EventFlags::RDHUP;
        }
        if self.writable {
            flags |= EventFlags::OUT;
        }
        flags
    }
}

/// One readiness report from [`Poller::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    token: Token,
    flags: EventFlags,
}

impl Event {
    /// The token the fd was registered with.
    pub const fn token(&self) -> Token {
        self.token
    }

    /// A read would not block: data, end of stream or an error is waiting (`EPOLLIN`,
    /// `EPOLLRDHUP`, `EPOLLHUP` or `EPOLLERR`). Call `recv_record`/`accept`.
    pub fn is_readable(&self) -> bool {
        self.flags
            .intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR)
    }

    /// A write would not block (`EPOLLOUT`), or would fail at once (`EPOLLERR`).
    pub fn is_writable(&self) -> bool {
        self.flags.intersects(EventFlags::OUT | EventFlags::ERR)
    }

    /// The peer will send nothing more (`EPOLLRDHUP` or `EPOLLHUP`); queued records remain.
    pub fn is_read_closed(&self) -> bool {
        self.flags.intersects(EventFlags::RDHUP | EventFlags::HUP)
    }

    /// Both directions are shut down, or the socket is not connected (`EPOLLHUP`).
    pub fn is_hangup(&self) -> bool {
        self.flags.contains(EventFlags::HUP)
    }

    /// An error is pending on the fd (`EPOLLERR`); the next I/O call reports it.
    pub fn is_error(&self) -> bool {
        self.flags.contains(EventFlags::ERR)
    }
}

/// A reusable buffer of events for [`Poller::wait`].
pub struct Events {
    buf: Vec<epoll::Event>,
    len: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Events {
    /// A buffer that receives at most `capacity` (at least 1) events per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![
                epoll::Event {
                    flags: EventFlags::empty(),
                    data: EventData::new_u64(0),
                };
                capacity.max(1)
            ],
            len: 0,
        }
    }

    /// Most events one wait can report.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Number of events reported by the last wait.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last wait reported nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events reported by the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|e| Event {
            token: Token(e.data.u64()),
            flags: e.flags,
        })
    }
}

/// An epoll instance (close-on-exec) in level-triggered mode.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    /// A new, empty poller.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// A second handle to the same epoll set (a `dup` of its fd): one thread may wait on it
    /// while others change registrations through the first, which epoll allows.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            epoll: self.epoll.try_clone()?,
        })
    }

    /// Registers `fd` with `token` and `interest`. Fails with `AlreadyExists` if registered.
    pub fn add(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        epoll::add(
            &self.epoll,
            fd.as_fd(),
            EventData::new_u64(token.0),
            interest.flags(),
        )?;
        Ok(())
    }

    /// Changes the token and interest of a registered `fd`.
    pub fn modify(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        epoll::modify(
            &self.epoll,
            fd.as_fd(),
            EventData::new_u64(token.0),
            interest.flags(),
        )?;
        Ok(())
    }

    /// Removes `fd`'s registration. Do this before dropping the fd (see the module docs).
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.epoll, fd.as_fd())?;
        Ok(())
    }

    /// Waits until a registered fd is ready or `timeout` passes; returns the number of events.
    ///
    /// `None` waits indefinitely and `Some(Duration::ZERO)` only polls. Other timeouts are
    /// rounded *up* to whole milliseconds, so the call never returns before `timeout` has
    /// passed unless an fd is ready: a driver sleeping until a deadline is never woken just
    /// short of it, over and over. `EINTR` is retried with the remaining time. Returns 0 on
    /// timeout (very long timeouts, beyond `i32::MAX` ms, may also return 0 early).
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut remaining = timeout;
        events.len = 0;
        loop {
            let timeout = epoll_timeout(remaining);
            match epoll::wait(&self.epoll, &mut events.buf[..], timeout.as_ref()) {
                Ok(n) => {
                    events.len = n;
                    return Ok(n);
                }
                Err(Errno::INTR) => {
                    if let Some(deadline) = deadline {
                        remaining = Some(deadline.saturating_duration_since(Instant::now()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

/// `timeout` in whole milliseconds, rounded up, for `epoll_wait`; `None` is "forever".
fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

/// [`timeout_ms`] as the `Timespec` `epoll_wait` takes: whole milliseconds, so that the call
/// is the same whether the kernel is given milliseconds or nanoseconds.
fn epoll_timeout(timeout: Option<Duration>) -> Option<Timespec> {
    match timeout_ms(timeout) {
        -1 => None,
        ms => Some(Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        }),
    }
}

/// Wakes a thread blocked in [`Poller::wait`] from any thread: an eventfd, registered for
/// [`Interest::READABLE`] under a token of the caller's choice.
///
/// Share it through an `Arc`. [`Waker::wake`] is cheap and never blocks; wakes coalesce. The
/// woken I/O thread calls [`Waker::reset`] before draining its request channel, so a wake that
/// races with the drain is never lost (it leaves the eventfd readable for the next wait).
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new, unwoken waker (non-blocking, close-on-exec eventfd).
    pub fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self { fd })
    }

    /// Takes an eventfd another process sent (the wake of a shared ring): refuses any other
    /// kind of fd (`ErrorKind::InvalidData`, or the error of reading `/proc/self/fd`), and
    /// makes it non-blocking, so that neither [`Waker::wake`] nor [`Waker::reset`] can block
    /// whatever the sender did with it. Closes the fd on failure.
    pub fn adopt(fd: OwnedFd) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        if target.as_os_str() != "anon_inode:[eventfd]" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an eventfd: {}", target.display()),
            ));
        }
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(Self { fd })
    }

    /// Makes the waker readable until the next [`Waker::reset`]. Callable from any thread.
    pub fn wake(&self) -> io::Result<()> {
        match retry_eintr(|| rustix::io::write(&self.fd, &1u64.to_ne_bytes())) {
            // EAGAIN: the counter is at its maximum, so the waker is already readable.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Clears pending wakes; returns whether there were any. Call on the I/O thread.
    pub fn reset(&self) -> io::Result<bool> {
        let mut count = [0u8; 8];
        match retry_eintr(|| rustix::io::read(&self.fd, &mut count)) {
            Ok(_) => Ok(true),
            Err(Errno::AGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Sent, send_record, socketpair_seqpacket};
    use crate::testutil::shared;
    use std::sync::Arc;

    #[test]
    fn adopt_takes_eventfds_only() {
        let waker = Waker::new().expect("eventfd");
        let copy = waker.as_fd().try_clone_to_owned().expect("dup");
        let adopted = Waker::adopt(copy).expect("an eventfd");
        adopted.wake().expect("wake");
        assert!(waker.reset().expect("reset"), "the same counter");
        let (a, _b) = socketpair_seqpacket().expect("socketpair");
        let e = Waker::adopt(a).expect_err("a socket");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_clone_waits_on_the_same_set() {
        let poller = Poller::new().expect("poller");
        let clone = poller.try_clone().expect("dup");
        let waker = Waker::new().expect("eventfd");
        poller
            .add(&waker, Token(7), Interest::READABLE)
            .expect("add");
        let mut events = Events::with_capacity(4);
        let idle = clone.wait(&mut events, Some(Duration::ZERO)).expect("poll");
        assert_eq!(idle, 0);
        waker.wake().expect("wake");
        let n = clone.wait(&mut events, Some(Duration::ZERO)).expect("poll");
        assert_eq!(n, 1);
        assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(7)));
    }

    #[test]
    fn timeout_rounds_up_to_whole_ms() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(999))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1_000_001))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(timeout_ms(Some(Duration::from_secs(1 << 40))), i32::MAX);
        assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
    }

    #[test]
    fn short_timeout_is_not_cut_short() {
        let _g = shared();
        let poller = Poller::new().expect("poller");
        let mut events = Events::with_capacity(4);
        for timeout in [Duration::from_micros(300), Duration::from_micros(1200)] {
            let start = Instant::now();
            let n = poller.wait(&mut events, Some(timeout)).expect("wait");
            assert_eq!(n, 0);
            assert!(events.is_empty());
            assert!(start.elapsed() >= timeout, "woke early for {timeout:?}");
        }
        let n = poller
            .wait(&mut events, Some(Duration::ZERO))
            .expect("poll");
        assert_eq!(n, 0);
    }

    #[test]
    fn readiness_tokens_modify_delete() {
        let _g = shared();
        let poller = Poller::new().expect("poller");
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let mut events = Events::with_capacity(8);
        poller.add(&b, Token(7), Interest::READABLE).expect("add");
        let err = poller
            .add(&b, Token(7), Interest::READABLE)
            .expect_err("twice");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            0
        );

        assert_eq!(send_record(&a, b"x", &[]).expect("send"), Sent::Complete);
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            1
        );
        let ev = events.iter().next().expect("one event");
        assert_eq!(ev.token(), Token(7));
        assert!(ev.is_readable() && !ev.is_writable() && !ev.is_read_closed());
        // Level-triggered: still reported while the record is unread.
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            1
        );

        poller.modify(&b, Token(9), Interest::BOTH).expect("modify");
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            1
        );
        let ev = events.iter().next().expect("one event");
        assert_eq!(ev.token(), Token(9));
        assert!(ev.is_readable() && ev.is_writable());

        poller.modify(&b, Token(9), Interest::NONE).expect("modify");
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            0
        );
        drop(a);
        // Hangup is reported even without interest.
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            1
        );
        let ev = events.iter().next().expect("one event");
        assert!(ev.is_hangup() && ev.is_read_closed() && ev.is_readable());

        poller.delete(&b).expect("delete");
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            0
        );
        let err = poller.delete(&b).expect_err("not registered");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn waker_wakes_a_blocked_wait_from_another_thread() {
        let _g = shared();
        let poller = Poller::new().expect("poller");
        let waker = Arc::new(Waker::new().expect("waker"));
        poller
            .add(&*waker, Token(u64::MAX), Interest::READABLE)
            .expect("add");
        let mut events = Events::with_capacity(2);
        assert!(!waker.reset().expect("reset"), "fresh waker is not woken");

        // The other thread waits (spinning on /proc, no sleep) until this thread is blocked
        // in epoll_wait, then wakes it. Should /proc be unreadable it wakes at once, which
        // exercises the "woken before waiting" path instead.
        let tid = rustix::thread::gettid().as_raw_nonzero();
        let remote = Arc::clone(&waker);
        let handle = std::thread::spawn(move || {
            let stat = format!("/proc/self/task/{tid}/stat");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                let Ok(text) = std::fs::read_to_string(&stat) else {
                    break;
                };
                // Field 3, after the parenthesised command name, is the state.
                let state = text
                    .rsplit(')')
                    .next()
                    .and_then(|s| s.split_whitespace().next());
                if state == Some("S") {
                    break;
                }
                std::hint::spin_loop();
            }
            remote.wake().expect("wake");
        });
        let n = poller
            .wait(&mut events, Some(Duration::from_secs(30)))
            .expect("wait");
        handle.join().expect("waking thread");
        assert_eq!(n, 1);
        assert_eq!(
            events.iter().next().map(|e| e.token()),
            Some(Token(u64::MAX))
        );

        // Wakes coalesce; reset drains them all.
        waker.wake().expect("wake");
        waker.wake().expect("wake");
        assert!(waker.reset().expect("reset"));
        assert!(!waker.reset().expect("reset"));
        assert_eq!(
            poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait"),
            0
        );
    }

    #[test]
    fn waker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Waker>();
        assert_send_sync::<Poller>();
    }
}
