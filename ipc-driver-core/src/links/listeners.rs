//! The node's listeners: claiming the hub's address and giving it up, accepting on the hub's
//! and the data socket, and, when the node's sockets close, the group's directory if it was
//! the last in it.

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use ipc_os::pidfd::PidFd;
use ipc_os::socket;
use ipc_proto::data::OUTGOING;
use ipc_proto::{Listener, Member, MemberInput, PeerId};
use tracing::{debug, info, trace, warn};

use super::{DATA_LISTENER, HUB_LISTENER, Links, feed, interest};
use crate::ACCEPT_BUDGET;

/// A node's sockets close: its listeners first, whose files go with them; then, if it left
/// last, the group's directory ([`GroupDir::remove_if_unused`]).
///
/// [`GroupDir::remove_if_unused`]: ipc_os::rendezvous::GroupDir::remove_if_unused
impl<A> Drop for Links<A> {
    fn drop(&mut self) {
        self.hub_listener = None;
        self.data_listener = None;
        match self.dir.remove_if_unused() {
            Ok(true) => {
                let dir = self.dir.paths().dir().display();
                debug!(%dir, "the last to leave: the group's directory is removed");
            }
            Ok(false) => {}
            Err(e) => debug!(error = %e, "cannot remove the group's directory"),
        }
    }
}

impl<A> Links<A> {
    /// Claims the group's hub address for the member.
    pub fn bind(&mut self, member: &mut Member, now: Instant) -> io::Result<()> {
        let won = match self.dir.claim_hub() {
            Ok(Some(l)) => {
                // Bound during a pause: watched once the member accepts again.
                let want = interest(member.is_accepting(), false);
                self.poller.add(l.as_fd(), HUB_LISTENER, want)?;
                self.hub_listener = Some(l);
                true
            }
            Ok(None) => {
                trace!("another process holds the hub's lock");
                false
            }
            Err(e) => {
                warn!(error = %e, "cannot claim the group's hub");
                false
            }
        };
        feed(member, now, MemberInput::Bound { won });
        Ok(())
    }

    /// Closes the hub's listener.
    pub fn unbind(&mut self) {
        if let Some(l) = self.hub_listener.take() {
            let _ = self.poller.delete(l.as_fd());
            info!("this node's hub closed");
        }
    }

    /// Accepts what a listener has, up to [`ACCEPT_BUDGET`] (the listener stays readable for
    /// the rest). A failure (out of descriptors: `EMFILE`, `ENFILE`) goes to the member, which
    /// pauses the listeners for a while: the node goes on serving the links it has. `true` if
    /// accepting failed (the member's pause is then due).
    pub fn accept(&mut self, member: &mut Member, now: Instant, listener: Listener) -> bool {
        if !member.is_accepting() {
            return false;
        }
        let fd = match listener {
            Listener::Hub => self.hub_listener.as_ref().map(AsFd::as_fd),
            Listener::Data => self.data_listener.as_ref().map(AsFd::as_fd),
        };
        let mut accepted = Vec::new();
        let mut failed = None;
        if let Some(fd) = fd {
            while accepted.len() < ACCEPT_BUDGET {
                match socket::accept(fd) {
                    Ok(Some(conn)) => accepted.push(conn),
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        for (fd, cred) in accepted {
            self.next_peer += 1;
            debug_assert!(self.next_peer < OUTGOING);
            let peer = PeerId(self.next_peer);
            let process = (listener == Listener::Hub).then(|| PidFd::open_peer(fd.as_fd()));
            let data = listener == Listener::Data;
            if let Err(e) = self.add_link(fd, data, data, peer) {
                // The connection closes with its fd; the member never heard of it.
                if self.peer_log.allow(now) {
                    warn!(?listener, error = %e, "could not watch an accepted connection");
                }
                continue;
            }
            let cred = Some(cred);
            feed(
                member,
                now,
                MemberInput::Accepted {
                    peer,
                    listener,
                    cred,
                },
            );
            if let Some(process) = process {
                self.watch(member, now, peer, process);
            }
        }
        let Some(e) = failed else {
            return false;
        };
        debug!(?listener, error = %e, "accept failed");
        feed(member, now, MemberInput::AcceptFailed(listener));
        true
    }

    /// Watches the listeners for connections while the member accepts them, and not while it
    /// has paused (out of descriptors): the links are served meanwhile.
    pub fn watch_listeners(&self, accepting: bool) {
        let want = interest(accepting, false);
        for (l, token) in [
            (self.hub_listener.as_ref().map(AsFd::as_fd), HUB_LISTENER),
            (self.data_listener.as_ref().map(AsFd::as_fd), DATA_LISTENER),
        ] {
            if let Some(l) = l
                && let Err(e) = self.poller.modify(l, token, want)
            {
                warn!(error = %e, "could not change what a listener is watched for");
            }
        }
    }
}
