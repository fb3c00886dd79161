//! The [`spoke_ops`] target: a spoke driven by arbitrary ops, checked after each.

use std::collections::BTreeSet;
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};

use crate::ids::PeerId;
use crate::machine::{AccessPolicy, Input};
use crate::spoke::{Spoke, SpokeCmd, SpokeConfig, SpokeEvt};
use crate::topology::View;
use crate::wire::Frame;

use super::common::{
    Clock, LOCAL_NODE, TOPICS, Tick, check_deadline, check_history, link_output, peer, split_at,
    tombstone_cap,
};
use super::wire::valid_bytes;

/// The input of [`spoke_ops`]: how the spoke starts, then what happens to it.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct SpokeCase {
    /// How the spoke starts.
    pub setup: SpokeSetup,
    /// What happens to it.
    pub ops: Vec<SpokeOp>,
}

/// How the spoke of [`spoke_ops`] starts. Its node is [`LOCAL_NODE`].
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct SpokeSetup {
    /// [`SpokeConfig::rng_seed`].
    pub rng_seed: u64,
    /// [`SpokeConfig::observer`].
    pub observer: bool,
    /// The tombstone cap: `None` for [`DEFAULT_TOMBSTONES`](crate::DEFAULT_TOMBSTONES),
    /// else `n % 8`.
    pub tombstones: Option<u8>,
}

/// A topic name or type string for a command.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    /// [`TOPICS`]`[n % 6]`.
    Known(u8),
    /// Anything.
    Raw(String),
}

impl Topic {
    pub(super) fn get(&self) -> String {
        match self {
            Self::Known(n) => TOPICS[usize::from(*n) % TOPICS.len()].to_owned(),
            Self::Raw(s) => s.clone(),
        }
    }
}

/// A command of the local application.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum CmdOp {
    /// [`SpokeCmd::Join`].
    Join,
    /// [`SpokeCmd::Leave`].
    Leave,
    /// [`SpokeCmd::Announce`].
    Announce {
        /// The topic.
        topic: Topic,
        /// The type string.
        mime: Topic,
    },
    /// [`SpokeCmd::Retract`].
    Retract(Topic),
    /// [`SpokeCmd::Subscribe`].
    Subscribe(Topic),
    /// [`SpokeCmd::Unsubscribe`].
    Unsubscribe(Topic),
}

impl CmdOp {
    fn get(&self) -> SpokeCmd {
        match self {
            Self::Join => SpokeCmd::Join,
            Self::Leave => SpokeCmd::Leave,
            Self::Announce { topic, mime } => SpokeCmd::Announce {
                topic: topic.get(),
                mime: mime.get(),
            },
            Self::Retract(t) => SpokeCmd::Retract { topic: t.get() },
            Self::Subscribe(t) => SpokeCmd::Subscribe { topic: t.get() },
            Self::Unsubscribe(t) => SpokeCmd::Unsubscribe { topic: t.get() },
        }
    }
}

/// One thing that happens to the spoke of [`spoke_ops`]. Links are named modulo 8; the hub
/// link is whichever the spoke holds (link 0 when it holds none).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum SpokeOp {
    /// A command.
    Cmd(CmdOp),
    /// The driver could not connect.
    ConnectFailed,
    /// The driver's bind attempt won or lost.
    BindOutcome(bool),
    /// A link comes up (ignored for a link already up: drivers never reuse a live id).
    PeerUp(u8),
    /// A link goes down.
    PeerDown(u8),
    /// The hub link goes down.
    HubDown,
    /// Raw bytes arrive on a link.
    Bytes {
        /// The link.
        peer: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Raw bytes arrive on the hub link.
    HubBytes(Vec<u8>),
    /// A frame arrives on the hub link, [sanitized](super::sanitize) so that it decodes, in two
    /// pieces.
    HubFrame {
        /// The frame.
        frame: Frame,
        /// Where to cut its bytes (modulo their length plus one).
        split: u8,
    },
    /// Time passes.
    Time(Tick),
}

/// The `spoke_ops` target: builds one [`Spoke`] from the input's setup, applies its ops, drains
/// `poll_output` after each and checks the invariants (see the module docs). Returns the names
/// of the events the spoke emitted.
pub fn spoke_ops(data: &[u8], origin: Instant) -> Vec<&'static str> {
    match SpokeCase::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(case) => run_spoke(&case, origin),
        Err(_) => Vec::new(),
    }
}

/// Runs one [`SpokeCase`]; see [`spoke_ops`].
pub fn run_spoke(case: &SpokeCase, origin: Instant) -> Vec<&'static str> {
    let config = SpokeConfig {
        rng_seed: case.setup.rng_seed,
        node_id: Some(LOCAL_NODE),
        name: "fuzz".into(),
        data_addr: "@fuzz/data".into(),
        observer: case.setup.observer,
        max_tombstones: tombstone_cap(case.setup.tombstones),
        // The harness plays a hub the spoke trusts (links come up without credentials).
        access: AccessPolicy::anyone(),
        ..SpokeConfig::default()
    };
    let mut w = SpokeWatch {
        spoke: Spoke::new(config.clone(), origin),
        config,
        clock: Clock { now: origin },
        open: BTreeSet::new(),
        replayed: View::default(),
        events: Vec::new(),
    };
    w.check();
    for op in &case.ops {
        w.apply(op);
        w.check();
    }
    w.events
}

/// One spoke under test and what the checks know from outside it.
struct SpokeWatch {
    spoke: Spoke,
    config: SpokeConfig,
    clock: Clock,
    /// Links up and not closed by either side.
    open: BTreeSet<PeerId>,
    /// Every topology event the spoke emitted, applied in order to an empty view.
    replayed: View,
    events: Vec<&'static str>,
}

impl SpokeWatch {
    fn hub_link(&self) -> PeerId {
        self.spoke.hub_peer().unwrap_or(PeerId(0))
    }

    fn apply(&mut self, op: &SpokeOp) {
        let now = self.clock.now;
        let result = match op {
            SpokeOp::Cmd(cmd) => return self.command(cmd.get()),
            SpokeOp::ConnectFailed => self.spoke.handle(now, Input::ConnectFailed),
            SpokeOp::BindOutcome(won) => self.spoke.handle(now, Input::BindOutcome { won: *won }),
            SpokeOp::PeerUp(p) => {
                if !self.open.insert(peer(*p)) {
                    return;
                }
                let peer = peer(*p);
                self.spoke.handle(now, Input::PeerUp { peer, cred: None })
            }
            SpokeOp::PeerDown(p) => {
                self.open.remove(&peer(*p));
                self.spoke.handle(now, Input::PeerDown(peer(*p)))
            }
            SpokeOp::HubDown => {
                let peer = self.hub_link();
                self.open.remove(&peer);
                self.spoke.handle(now, Input::PeerDown(peer))
            }
            SpokeOp::Bytes { peer: p, data } => {
                let peer = peer(*p);
                self.spoke.handle(now, Input::Bytes { peer, data })
            }
            SpokeOp::HubBytes(data) => {
                let peer = self.hub_link();
                self.spoke.handle(now, Input::Bytes { peer, data })
            }
            SpokeOp::HubFrame { frame, split } => {
                let bytes = valid_bytes(frame.clone(), &self.config.limits);
                let (a, b) = split_at(&bytes, *split);
                let peer = self.hub_link();
                let first = self.spoke.handle(now, Input::Bytes { peer, data: a });
                assert_eq!(first, Ok(()), "bytes are never an error");
                self.drain();
                // The first piece may have ended the link: the rest goes where it went.
                self.spoke.handle(now, Input::Bytes { peer, data: b })
            }
            SpokeOp::Time(tick) => {
                let at = self.clock.tick(tick, self.spoke.poll_timeout());
                self.spoke.handle_timeout(at);
                check_deadline(self.spoke.poll_timeout(), self.clock.now);
                Ok(())
            }
        };
        assert_eq!(result, Ok(()), "{op:?} is no command: handle must not fail");
        self.drain();
    }

    /// A command: `Err` is fine, but then nothing changed.
    fn command(&mut self, cmd: SpokeCmd) {
        let before = (
            self.spoke.state(),
            self.spoke.own_topics().clone(),
            self.spoke.view().clone(),
            self.spoke.poll_timeout(),
        );
        let name = cmd.name();
        if let Err(e) = self.spoke.handle(self.clock.now, Input::Cmd(cmd)) {
            let after = (
                self.spoke.state(),
                self.spoke.own_topics().clone(),
                self.spoke.view().clone(),
                self.spoke.poll_timeout(),
            );
            assert_eq!(before, after, "{name} refused ({e}) but changed the spoke");
            assert!(
                self.spoke.poll_output().is_none(),
                "{name} refused ({e}) but queued output"
            );
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.spoke.poll_output() {
            let Some(e) = link_output(&mut self.open, &self.config.limits, out) else {
                continue;
            };
            if let SpokeEvt::Topology(event) = &e {
                assert!(
                    self.replayed.apply(event),
                    "{event:?} changes nothing in the view replayed from the events"
                );
            }
            self.events.push(e.name());
        }
    }

    fn check(&self) {
        let _ = self.spoke.poll_timeout();
        let _ = self.spoke.next_timer();
        let view = self.spoke.view();
        assert_eq!(
            self.replayed.summary(),
            view.summary(),
            "the events replayed do not add up to the view"
        );
        assert_eq!(self.replayed.hub(), view.hub(), "the hub, from the events");
        assert_eq!(
            self.spoke.history().view().summary(),
            view.summary(),
            "the view is not what the history adds up to"
        );
        assert_eq!(
            self.open,
            self.spoke.hub_peer().into_iter().collect(),
            "the spoke holds exactly the hub link it did not close"
        );
        assert!(self.spoke.own_topics().len() <= self.config.limits.max_topics_per_node);
        check_history(self.spoke.history(), self.config.max_tombstones);
    }
}
