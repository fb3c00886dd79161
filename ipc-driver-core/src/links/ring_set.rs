//! The rings' own `epoll` set, for a driver whose application threads wait on the rings
//! themselves ([`Links::use_ring_set`]).
//!
//! Without it, every ring's eventfd sits in the node's set beside the sockets, and the thread
//! that waits on that set (the driver's I/O thread) reads the rings and hands their messages
//! on: a receiving application thread is woken by it, a second wakeup after the one the
//! publisher paid for. With it, the eventfds sit in an inner set, itself in the node's set
//! under one token ([`Ready::RingSet`]). A receiving thread takes that inner set out of the
//! node's set ([`Links::detach_ring_set`]), waits on it directly, reads the rings itself, and
//! puts it back when it returns ([`Links::attach_ring_set`]): one wakeup per message, on the
//! thread that wants it, while the I/O thread sleeps on everything else.
//!
//! [`Ready::RingSet`]: super::Ready::RingSet

use std::io;
use std::os::fd::AsFd;

use ipc_os::poll::{Interest, Poller};

use super::{Links, RING_SET};

/// The inner set and whether it is in the node's set.
#[derive(Debug)]
pub(super) struct RingSet {
    poller: Poller,
    attached: bool,
}

impl<A> Links<A> {
    /// From now on, rings' eventfds go into an inner `epoll` set of their own (see the module
    /// docs), reported in the node's set as [`Ready::RingSet`](super::Ready::RingSet). Call
    /// before any link exists.
    pub fn use_ring_set(&mut self) -> io::Result<()> {
        if self.ring_set.is_some() {
            return Ok(());
        }
        let poller = Poller::new()?;
        self.poller
            .add(poller.as_fd(), RING_SET, Interest::READABLE)?;
        self.ring_set = Some(RingSet {
            poller,
            attached: true,
        });
        Ok(())
    }

    /// The inner set of the rings' eventfds, if the driver asked for one: wait on it (through
    /// [`Poller::try_clone`], without holding the table), and hand what it reports to the
    /// driver's usual handling of [`Ready::Ring`](super::Ready::Ring). A driver may add fds of
    /// its own under [`OWN_TOKEN`](super::OWN_TOKEN).
    pub fn ring_set(&self) -> Option<&Poller> {
        self.ring_set.as_ref().map(|s| &s.poller)
    }

    /// Takes the inner set out of the node's set: the thread waiting on the node's set is no
    /// longer woken by the rings. For a thread that waits on the rings itself.
    ///
    /// The inner set stays registered in the node's set, with no events asked
    /// (`EPOLL_CTL_MOD`), rather than being deleted and added again: adding an epoll set to
    /// another makes the kernel check the whole graph of sets for loops, which cost about a
    /// fifth of a receiving process's time in a blocking round trip, done once per message.
    pub fn detach_ring_set(&mut self) -> io::Result<()> {
        self.ring_set_asks(false)
    }

    /// Puts the inner set back into the node's set (a ring with news makes the node's set
    /// ready at once).
    pub fn attach_ring_set(&mut self) -> io::Result<()> {
        self.ring_set_asks(true)
    }

    fn ring_set_asks(&mut self, attached: bool) -> io::Result<()> {
        match &mut self.ring_set {
            Some(set) if set.attached != attached => {
                let interest = if attached {
                    Interest::READABLE
                } else {
                    // An epoll set reports no hangup or error: nothing at all.
                    Interest::NONE
                };
                self.poller.modify(set.poller.as_fd(), RING_SET, interest)?;
                set.attached = attached;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether the inner set is out of the node's set ([`Links::detach_ring_set`]): the
    /// rings are someone else's to wait on.
    pub fn is_ring_set_detached(&self) -> bool {
        self.ring_set.as_ref().is_some_and(|s| !s.attached)
    }

    /// The set the rings' eventfds go into.
    pub(super) fn ring_poller(&self) -> &Poller {
        rings_in(&self.poller, &self.ring_set)
    }
}

/// The set the rings' eventfds go into, of a node's set and its rings' own (for a caller that
/// borrows a link of the table meanwhile).
pub(super) fn rings_in<'a>(poller: &'a Poller, set: &'a Option<RingSet>) -> &'a Poller {
    set.as_ref().map_or(poller, |s| &s.poller)
}
