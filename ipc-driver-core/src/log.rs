//! How both drivers log what the member reports about peers: refused, misbehaving or expelled
//! peers are logged rate-limited ([`PeerLog`]), since a hostile peer chooses how often.

use std::time::Instant;

use ipc_proto::{CloseReason, HubEvt, LogLimit, MemberEvt};
use tracing::{debug, warn};

use crate::{PEER_LOG_BURST, PEER_LOG_INTERVAL};

/// The rate limit of log lines about peers, with its summary line.
#[derive(Debug)]
pub struct PeerLog(LogLimit);

impl Default for PeerLog {
    fn default() -> Self {
        Self(LogLimit::new(PEER_LOG_BURST, PEER_LOG_INTERVAL))
    }
}

impl PeerLog {
    /// Whether to log one more line about a peer now (see [`LogLimit`]).
    pub fn allow(&mut self, now: Instant) -> bool {
        self.summary(now);
        self.0.allow(now)
    }

    /// Logs how many lines were left out, once their interval is over.
    pub fn summary(&mut self, now: Instant) {
        if let Some(n) = self.0.take_summary(now) {
            let secs = self.0.interval().as_secs();
            warn!("... and {n} more peers refused or disconnected in the last {secs} s");
        }
    }

    /// When the summary is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
}

/// Whether a hub event is about a peer it refused or threw out (logged rate-limited).
pub(crate) fn is_refusal(e: &HubEvt) -> bool {
    matches!(
        e,
        HubEvt::PeerRefused { .. } | HubEvt::PeerMisbehaved { .. } | HubEvt::PeerExpelled { .. }
    )
}

/// Logs a hub event (the hub's own events are not the application's).
pub(crate) fn log_hub(e: &HubEvt) {
    match e {
        HubEvt::PeerRefused { peer, reason } => warn!(%peer, %reason, "refused a peer"),
        HubEvt::PeerMisbehaved { peer, reason } => {
            warn!(%peer, %reason, "disconnected a peer that broke the protocol");
        }
        HubEvt::PeerExpelled { peer, node } => warn!(%peer, ?node, "expelled a silent peer"),
        other => debug!(evt = other.name(), "hub event"),
    }
}

/// Logs the member events both drivers only log (about peers, the hub's events, leaving) and
/// returns the others for the driver.
pub fn log_member_evt(log: &mut PeerLog, now: Instant, evt: MemberEvt) -> Option<MemberEvt> {
    match evt {
        MemberEvt::Hub(e) => {
            if !is_refusal(&e) || log.allow(now) {
                log_hub(&e);
            }
        }
        MemberEvt::PeerMisbehaved { peer, reason } => {
            if log.allow(now) {
                warn!(%peer, %reason, "disconnected a peer that broke the protocol");
            }
        }
        MemberEvt::LinkRefused {
            peer,
            listener,
            reason,
        } => {
            if log.allow(now) {
                warn!(%peer, ?listener, %reason, "closed a connection");
            }
        }
        MemberEvt::AcceptPaused => {
            if log.allow(now) {
                warn!("accepting failed (out of file descriptors?): pausing the listeners");
            }
        }
        MemberEvt::PeerRefused { peer, cred, reason } => {
            if log.allow(now) {
                let (uid, pid) = cred.map_or((None, None), |c| (Some(c.uid), Some(c.pid)));
                warn!(%peer, ?uid, ?pid, %reason, "refused a data link");
            }
        }
        MemberEvt::HubUnresponsive => {
            warn!("the hub is unresponsive");
            return Some(MemberEvt::HubUnresponsive);
        }
        MemberEvt::Left => debug!("left the group"),
        MemberEvt::HubClosed(CloseReason::Expelled) => {
            warn!(
                "this node was expelled from the group (stopped or hung past the keepalive): \
                 rejoining; messages published meanwhile are lost, and subscriptions are told"
            );
            return Some(MemberEvt::HubClosed(CloseReason::Expelled));
        }
        other => return Some(other),
    }
    None
}
