//! The [`hub_ops`] target: a hub driven by arbitrary ops, checked after each.

use std::collections::BTreeSet;
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};

use crate::history::Horizon;
use crate::hub::{Hub, HubCmd, HubConfig, HubSeed};
use crate::ids::{Credentials, PeerId};
use crate::machine::{AccessPolicy, Input};
use crate::spoke::{Spoke, SpokeCmd, SpokeConfig};
use crate::topology::Record;
use crate::wire::{self, Frame, Welcome};

use super::common::{
    ALLOWED_UID, Clock, LOCAL_NODE, Tick, check_deadline, check_history, link_output, peer,
    split_at, tombstone_cap,
};
use super::wire::valid_bytes;

/// The input of [`hub_ops`]: how the hub starts, then what happens to it.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HubCase {
    /// How the hub starts.
    pub setup: HubSetup,
    /// What happens to it.
    pub ops: Vec<HubOp>,
}

/// How the hub of [`hub_ops`] starts.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HubSetup {
    /// [`HubConfig::rng_seed`].
    pub rng_seed: u64,
    /// Admit anyone, credentials or not; otherwise only [`ALLOWED_UID`].
    pub anyone: bool,
    /// The tombstone cap: `None` for [`DEFAULT_TOMBSTONES`](crate::DEFAULT_TOMBSTONES),
    /// else `n % 8`.
    pub tombstones: Option<u8>,
    /// A history to inherit, as a spoke that won the bind would hand it over; `None` for a hub
    /// with no past.
    pub inherited: Option<Inherited>,
}

/// What the spoke whose history a hub inherits was told by its previous hub.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Inherited {
    /// The previous hub's welcome (its term becomes the spoke's known term).
    pub welcome: Welcome,
    /// The previous hub's snapshot, [sanitized](super::sanitize).
    pub records: Vec<Record>,
    /// What the previous hub had seen.
    pub horizon: Horizon,
}

/// The kernel credentials a link comes up with.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Cred {
    /// None could be read.
    Missing,
    /// A process of [`ALLOWED_UID`].
    Allowed {
        /// Its pid.
        pid: u32,
    },
    /// Whatever the input says.
    Other(Credentials),
}

impl Cred {
    fn get(&self) -> Option<Credentials> {
        match *self {
            Self::Missing => None,
            Self::Allowed { pid } => Some(Credentials {
                pid,
                uid: ALLOWED_UID,
                gid: ALLOWED_UID,
            }),
            Self::Other(c) => Some(c),
        }
    }
}

/// One thing that happens to the hub of [`hub_ops`]. Links are named modulo 8.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum HubOp {
    /// A spoke connects.
    PeerUp {
        /// The link.
        peer: u8,
        /// Its credentials.
        cred: Cred,
    },
    /// A link goes down.
    PeerDown(u8),
    /// Raw bytes arrive on a link.
    Bytes {
        /// The link.
        peer: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A frame arrives on a link, [sanitized](super::sanitize) so that it decodes, in two pieces.
    Frame {
        /// The link.
        peer: u8,
        /// The frame.
        frame: Frame,
        /// Where to cut its bytes (see the code: modulo their length plus one).
        split: u8,
    },
    /// Time passes.
    Time(Tick),
    /// [`HubCmd::Close`].
    Close,
    /// A spoke-only input, which a hub ignores: `ConnectFailed` (`false`) or a `BindOutcome`.
    SpokeOnly(bool),
}

/// The `hub_ops` target: builds one [`Hub`] from the input's setup, applies its ops, drains
/// `poll_output` after each and checks the invariants (see the module docs). Returns the names
/// of the events the hub emitted, for tests that want to know how deep an input went.
pub fn hub_ops(data: &[u8], origin: Instant) -> Vec<&'static str> {
    match HubCase::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(case) => run_hub(&case, origin),
        Err(_) => Vec::new(),
    }
}

/// Runs one [`HubCase`]; see [`hub_ops`].
pub fn run_hub(case: &HubCase, origin: Instant) -> Vec<&'static str> {
    let mut config = HubConfig::default();
    config.rng_seed(case.setup.rng_seed);
    config.access(if case.setup.anyone {
        AccessPolicy::anyone()
    } else {
        AccessPolicy::same_uid(ALLOWED_UID)
    });
    config.max_tombstones = tombstone_cap(case.setup.tombstones);
    let seed = match &case.setup.inherited {
        Some(inherited) => inherit(inherited, config.max_tombstones, origin),
        None => HubSeed::empty(LOCAL_NODE),
    };
    let mut w = HubWatch {
        hub: Hub::new(config.clone(), seed, origin),
        config,
        clock: Clock { now: origin },
        open: BTreeSet::new(),
        events: Vec::new(),
    };
    w.check();
    for op in &case.ops {
        w.apply(op);
        w.check();
    }
    w.events
}

/// The seed a spoke hands its driver after following a hub that sent `inherited`.
fn inherit(inherited: &Inherited, max_tombstones: usize, now: Instant) -> HubSeed {
    let config = SpokeConfig {
        node_id: Some(LOCAL_NODE),
        max_tombstones,
        // The harness plays a hub the spoke trusts (links come up without credentials).
        access: AccessPolicy::anyone(),
        ..SpokeConfig::default()
    };
    let limits = config.limits.clone();
    let mut spoke = Spoke::new(config, now);
    let link = PeerId(0);
    let joined = spoke.handle(now, Input::Cmd(SpokeCmd::Join));
    assert_eq!(joined, Ok(()), "a new spoke joins");
    let up = spoke.handle(
        now,
        Input::PeerUp {
            peer: link,
            cred: None,
        },
    );
    assert_eq!(up, Ok(()), "a link is never an error");
    let mut bytes = valid_bytes(Frame::Welcome(inherited.welcome.clone()), &limits);
    bytes.extend(valid_bytes(
        Frame::Snapshot(inherited.records.clone()),
        &limits,
    ));
    bytes.extend(wire::encode(&Frame::SnapshotEnd(inherited.horizon.clone())));
    let fed = spoke.handle(
        now,
        Input::Bytes {
            peer: link,
            data: &bytes,
        },
    );
    assert_eq!(fed, Ok(()), "bytes are never an error");
    while spoke.poll_output().is_some() {}
    spoke.hub_seed()
}

/// One hub under test and what the checks know from outside it.
struct HubWatch {
    hub: Hub,
    config: HubConfig,
    clock: Clock,
    /// Links up and not closed by either side.
    open: BTreeSet<PeerId>,
    events: Vec<&'static str>,
}

impl HubWatch {
    fn apply(&mut self, op: &HubOp) {
        let now = self.clock.now;
        let result = match op {
            HubOp::PeerUp { peer: p, cred } => {
                if !self.hub.is_closed() {
                    self.open.insert(peer(*p));
                }
                let cred = cred.get();
                let peer = peer(*p);
                self.hub.handle(now, Input::PeerUp { peer, cred })
            }
            HubOp::PeerDown(p) => {
                self.open.remove(&peer(*p));
                self.hub.handle(now, Input::PeerDown(peer(*p)))
            }
            HubOp::Bytes { peer: p, data } => {
                let peer = peer(*p);
                self.hub.handle(now, Input::Bytes { peer, data })
            }
            HubOp::Frame {
                peer: p,
                frame,
                split,
            } => {
                let bytes = valid_bytes(frame.clone(), &self.config.limits);
                let (a, b) = split_at(&bytes, *split);
                let peer = peer(*p);
                let first = self.hub.handle(now, Input::Bytes { peer, data: a });
                assert_eq!(first, Ok(()), "bytes are never an error");
                self.drain();
                self.hub.handle(now, Input::Bytes { peer, data: b })
            }
            HubOp::Time(tick) => {
                let at = self.clock.tick(tick, self.hub.poll_timeout());
                self.hub.handle_timeout(at);
                check_deadline(self.hub.poll_timeout(), self.clock.now);
                Ok(())
            }
            HubOp::Close => {
                let was_closed = self.hub.is_closed();
                let r = self.hub.handle(now, Input::Cmd(HubCmd::Close));
                if was_closed {
                    assert_eq!(r, Err(crate::CmdError::Closed), "closing twice");
                    assert!(
                        self.hub.poll_output().is_none(),
                        "a refused command did something"
                    );
                }
                Ok(())
            }
            HubOp::SpokeOnly(false) => self.hub.handle(now, Input::ConnectFailed),
            HubOp::SpokeOnly(true) => self.hub.handle(now, Input::BindOutcome { won: true }),
        };
        assert_eq!(result, Ok(()), "{op:?} is no command: handle must not fail");
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            if let Some(e) = link_output(&mut self.open, &self.config.limits, out) {
                self.events.push(e.name());
            }
        }
    }

    fn check(&self) {
        let _ = self.hub.poll_timeout();
        let _ = self.hub.next_timer();
        assert_eq!(
            self.hub.peer_count(),
            self.open.len(),
            "the hub holds the links it did not close: {:?}",
            self.open
        );
        assert!(self.hub.members().count() <= self.hub.peer_count());
        check_history(self.hub.history(), self.config.max_tombstones);
    }
}
