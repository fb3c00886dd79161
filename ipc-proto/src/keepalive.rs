//! Keepalive figures: how often a heartbeat goes out, and how long silence is tolerated.
//!
//! Every link between a spoke and its hub carries heartbeats both ways. Each side sends one
//! every [`heartbeat`](Keepalive::heartbeat) interval, and declares the other gone after its
//! own [`limit`](Keepalive::limit) of silence: the hub expels the spoke
//! ([`HubEvt::PeerExpelled`](crate::HubEvt::PeerExpelled)), the spoke reports the hub
//! unresponsive ([`SpokeEvt::HubUnresponsive`](crate::SpokeEvt::HubUnresponsive)). A stopped
//! process (`SIGSTOP`) is not dead, so no pidfd reports it: the keepalive is what finds it.
//!
//! Members of one group may choose different figures. Each side judges by its own limit, and
//! each tells the other its figures ([`Hello::keepalive`](crate::wire::Hello::keepalive),
//! [`Welcome::keepalive`](crate::wire::Welcome::keepalive)); each then sends heartbeats at the
//! shorter of its own interval and the peer's (never below [`MIN_PEER_HEARTBEAT`]), so a
//! spoke with a short limit is not expelled, nor does it suspect its hub, because the other
//! side's interval is long.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The floor of an interval a peer asks for: a peer's request is followed down to this,
/// not below (a broken peer cannot make this side spin).
pub const MIN_PEER_HEARTBEAT: Duration = Duration::from_millis(10);

/// A node's keepalive figures: its heartbeat interval and its limit of silence.
///
/// ```
/// use std::time::Duration;
/// use ipc_proto::Keepalive;
///
/// let k = Keepalive::default();
/// assert_eq!(k.heartbeat, Duration::from_millis(500));
/// assert_eq!(k.limit, Duration::from_secs(2));
/// assert!(k.check().is_ok());
/// // A limit of one interval would expel a peer whose heartbeat is a little late.
/// assert!(Keepalive { heartbeat: Duration::from_secs(1), limit: Duration::from_secs(1) }.check().is_err());
/// ```
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Keepalive {
    /// How often a heartbeat goes out. Default 500 ms.
    pub heartbeat: Duration,
    /// How long the peer's silence is tolerated before it is declared gone. Default 2 s.
    pub limit: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            limit: Duration::from_secs(2),
        }
    }
}

impl Keepalive {
    /// A limit of `limit` and a heartbeat of a quarter of it (what
    /// [`HubConfig::keepalive`](crate::HubConfig::keepalive) sets).
    pub fn with_limit(limit: Duration) -> Self {
        Self {
            heartbeat: limit / 4,
            limit,
        }
    }

    /// Whether the figures make sense: a heartbeat above zero, and a limit of at least two
    /// heartbeats (one late heartbeat must not expel a live peer).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.heartbeat.is_zero() {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.limit < self.heartbeat.saturating_mul(2) {
            return Err(ConfigError::KeepaliveTooShort {
                heartbeat: self.heartbeat,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// The interval to send heartbeats at to a peer whose figures are `peer`: the shorter of
    /// ours and theirs, but not below [`MIN_PEER_HEARTBEAT`] for theirs.
    pub(crate) fn toward(own: Duration, peer: &Self) -> Duration {
        own.min(peer.heartbeat.max(MIN_PEER_HEARTBEAT))
    }
}

/// Why a configuration was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The heartbeat interval is zero.
    #[error("the heartbeat interval must be above zero")]
    ZeroHeartbeat,
    /// The keepalive limit is shorter than two heartbeat intervals.
    #[error(
        "the keepalive limit ({limit:?}) must be at least twice the heartbeat interval ({heartbeat:?})"
    )]
    KeepaliveTooShort {
        /// The heartbeat interval.
        heartbeat: Duration,
        /// The keepalive limit.
        limit: Duration,
    },
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::hub::HubSeed;
    use crate::wire::{CloseReason, Deframer, Frame, Hello, Limits, Welcome, encode};
    use crate::{
        AccessPolicy, Credentials, Horizon, Hub, HubConfig, HubEvt, Input, NodeId, NodeInfo,
        Output, PeerId, Spoke, SpokeCmd, SpokeConfig, SpokeEvt, Term,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)] // the test's epoch; only durations are added
        Instant::now()
    }

    fn node(n: u64) -> NodeId {
        NodeId::new(n).expect("non-zero")
    }

    /// What a machine did, with when (milliseconds after the start).
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Sent(u64, &'static str),
        Gone(u64),
    }

    /// Runs a hub with one member (whose `Hello` carries `asks`) that never speaks again,
    /// from timer to timer until `until` ms; returns the frames sent to it and its expulsion.
    fn silent_member(hub_figures: Keepalive, asks: Keepalive, until: u64) -> Vec<Seen> {
        let start = t0();
        let mut config = HubConfig::default();
        config
            .access(AccessPolicy::anyone())
            .keepalive(hub_figures.limit)
            .heartbeat(hub_figures.heartbeat);
        let mut hub = Hub::new(config, HubSeed::empty(node(99)), start);
        let peer = PeerId(1);
        let cred = Credentials {
            pid: 7,
            uid: 1000,
            gid: 1000,
        };
        let info = NodeInfo {
            id: node(1),
            name: "frozen".into(),
            data_addr: String::new(),
            pid: 0,
            uid: 0,
        };
        let hello = Frame::Hello(Hello {
            member: Some(info),
            term: Term(0),
            horizon: Horizon::default(),
            keepalive: asks,
        });
        let mut bytes = encode(&hello);
        bytes.extend(encode(&Frame::IntroEnd));
        let input = Input::PeerUp {
            peer,
            cred: Some(cred),
        };
        hub.handle(start, input).expect("a link");
        (hub.handle(start, Input::Bytes { peer, data: &bytes })).expect("bytes");
        let mut deframer = Deframer::new(Limits::default());
        let mut seen = Vec::new();
        let mut now = start;
        loop {
            let at = now.duration_since(start).as_millis() as u64;
            while let Some(out) = hub.poll_output() {
                match out {
                    Output::Transmit(t) => {
                        deframer.push(&t.bytes);
                        while let Some(f) = deframer.next_frame() {
                            let f = f.expect("the hub sends valid frames");
                            if let Frame::Welcome(w) = &f {
                                assert_eq!(w.keepalive, hub_figures, "the hub tells its figures");
                            }
                            if let Frame::Goodbye(reason) = &f {
                                assert_eq!(reason, &CloseReason::Expelled);
                            }
                            seen.push(Seen::Sent(at, f.name()));
                        }
                    }
                    Output::Evt(HubEvt::PeerExpelled { node: n, .. }) => {
                        assert_eq!(n, Some(node(1)));
                        seen.push(Seen::Gone(at));
                    }
                    Output::Evt(_) | Output::Disconnect(_) => {}
                }
            }
            let next = hub.poll_timeout().expect("a hub always has a timer");
            if next.duration_since(start) > ms(until) {
                return seen;
            }
            now = next;
            hub.handle_timeout(now);
        }
    }

    /// Only what happened after the introduction.
    fn after_intro(seen: Vec<Seen>) -> Vec<Seen> {
        let end = seen
            .iter()
            .position(|s| *s == Seen::Sent(0, "SnapshotEnd"))
            .expect("synced");
        seen.into_iter().skip(end + 1).collect()
    }

    #[test]
    fn the_hub_heartbeats_at_its_interval_and_expels_at_its_limit_not_sooner() {
        let hub = Keepalive {
            heartbeat: ms(300),
            limit: ms(1000),
        };
        let seen = after_intro(silent_member(hub, Keepalive::default(), 3000));
        use Seen::{Gone, Sent};
        assert_eq!(
            seen,
            [
                Sent(300, "Heartbeat"),
                Sent(600, "Heartbeat"),
                Sent(900, "Heartbeat"),
                Sent(1000, "Goodbye"),
                Gone(1000),
            ]
        );
    }

    #[test]
    fn the_hub_heartbeats_a_member_at_the_shorter_interval() {
        // The member asks for 100 ms (its own limit is short): the hub follows it, and still
        // expels by its own limit.
        let asks = Keepalive {
            heartbeat: ms(100),
            limit: ms(250),
        };
        let seen = after_intro(silent_member(Keepalive::default(), asks, 5000));
        let beats: Vec<_> = (1..20).map(|i| Seen::Sent(i * 100, "Heartbeat")).collect();
        assert_eq!(seen[..19], beats[..]);
        assert_eq!(
            seen[19..],
            [
                Seen::Sent(2000, "Heartbeat"),
                Seen::Sent(2000, "Goodbye"),
                Seen::Gone(2000)
            ]
        );
        // A member that asks for nothing at all gets the floor, not a busy loop.
        let zero = Keepalive {
            heartbeat: Duration::ZERO,
            limit: Duration::ZERO,
        };
        let seen = after_intro(silent_member(Keepalive::default(), zero, 35));
        assert_eq!(
            seen,
            [
                Seen::Sent(10, "Heartbeat"),
                Seen::Sent(20, "Heartbeat"),
                Seen::Sent(30, "Heartbeat")
            ]
        );
    }

    /// A spoke with `own` figures synced with a hub of `hub` figures that then stays silent:
    /// its heartbeats and its verdict until `until` ms.
    fn silent_hub(own: Keepalive, hub: Keepalive, until: u64) -> Vec<Seen> {
        let start = t0();
        let mut config = SpokeConfig {
            node_id: Some(node(1)),
            access: AccessPolicy::anyone(),
            ..SpokeConfig::default()
        };
        config.keepalive(own.limit).heartbeat(own.heartbeat);
        let mut spoke = Spoke::new(config, start);
        let link = PeerId(0);
        spoke
            .handle(start, Input::Cmd(SpokeCmd::Join))
            .expect("join");
        let up = Input::PeerUp {
            peer: link,
            cred: None,
        };
        spoke.handle(start, up).expect("a link");
        let mut data = Vec::new();
        for f in [
            Frame::Welcome(Welcome {
                hub: node(99),
                term: Term(1),
                keepalive: hub,
            }),
            Frame::Snapshot(Vec::new()),
            Frame::SnapshotEnd(Horizon::default()),
        ] {
            data.extend(encode(&f));
        }
        let bytes = Input::Bytes {
            peer: link,
            data: &data,
        };
        spoke.handle(start, bytes).expect("hub bytes");
        assert_eq!(spoke.hub_keepalive(), Some(hub));
        let mut deframer = Deframer::new(Limits::default());
        let mut seen = Vec::new();
        let mut now = start;
        loop {
            let at = now.duration_since(start).as_millis() as u64;
            while let Some(out) = spoke.poll_output() {
                match out {
                    Output::Transmit(t) if at > 0 => {
                        deframer.push(&t.bytes);
                        while let Some(f) = deframer.next_frame() {
                            seen.push(Seen::Sent(at, f.expect("valid").name()));
                        }
                    }
                    Output::Evt(SpokeEvt::HubUnresponsive) => seen.push(Seen::Gone(at)),
                    _ => {}
                }
            }
            let next = spoke.poll_timeout().expect("a synced spoke has timers");
            if next.duration_since(start) > ms(until) {
                return seen;
            }
            now = next;
            spoke.handle_timeout(now);
        }
    }

    #[test]
    fn a_spoke_heartbeats_at_the_shorter_interval_and_suspects_its_hub_at_its_limit() {
        use Seen::{Gone, Sent};
        let own = Keepalive {
            heartbeat: ms(400),
            limit: ms(1000),
        };
        let seen = silent_hub(own, Keepalive::default(), 1100);
        assert_eq!(
            seen,
            [Sent(400, "Heartbeat"), Sent(800, "Heartbeat"), Gone(1000)]
        );
        // The hub heartbeats every 150 ms and expels after 400: the spoke follows its interval.
        let hub = Keepalive {
            heartbeat: ms(150),
            limit: ms(400),
        };
        let seen = silent_hub(own, hub, 1000);
        let beats: Vec<_> = (1..=6).map(|i| Sent(i * 150, "Heartbeat")).collect();
        assert_eq!(seen[..6], beats[..]);
        assert_eq!(seen[6..], [Gone(1000)]);
    }

    #[test]
    fn the_limit_must_cover_two_heartbeats() {
        let k = |heartbeat, limit| Keepalive {
            heartbeat: ms(heartbeat),
            limit: ms(limit),
        };
        assert_eq!(k(500, 2000).check(), Ok(()));
        assert_eq!(k(500, 1000).check(), Ok(()));
        assert_eq!(k(0, 1000).check(), Err(ConfigError::ZeroHeartbeat));
        assert_eq!(
            k(600, 1000).check(),
            Err(ConfigError::KeepaliveTooShort {
                heartbeat: ms(600),
                limit: ms(1000)
            })
        );
        assert_eq!(Keepalive::with_limit(ms(1000)), k(250, 1000));
        assert_eq!(Keepalive::with_limit(ms(2000)), Keepalive::default());
    }

    #[test]
    fn heartbeats_go_at_the_shorter_interval_within_a_floor() {
        let peer = |heartbeat| Keepalive {
            heartbeat: ms(heartbeat),
            limit: ms(heartbeat * 4),
        };
        assert_eq!(Keepalive::toward(ms(500), &peer(100)), ms(100));
        assert_eq!(Keepalive::toward(ms(100), &peer(500)), ms(100));
        assert_eq!(Keepalive::toward(ms(500), &peer(0)), MIN_PEER_HEARTBEAT);
        assert_eq!(Keepalive::toward(ms(5), &peer(0)), ms(5));
    }
}
