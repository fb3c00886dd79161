//! Shared documents: a JSON value per name, replicated on every node that opens it, patched
//! with MongoDB update operators ([`Update`]), hosted by the hub.
//!
//! Two sans-IO machines speak the protocol over each spoke's link to the hub:
//! [`DocHost`] (one per hub, every document of the group) is the source of truth, and
//! [`DocReplica`] (one per node, every document that node opened) keeps the host's confirmed
//! state plus the node's own patches that the host has not answered yet. Their messages are
//! [`DocMsg`]s, encoded by [`encode_doc`](crate::wire::encode_doc) and carried inside
//! topology frames; a link is FIFO and reliable while it lives, and dies with the hub.
//!
//! # Documents and versions
//! A document is a name, a JSON value and a **version**: 0 when created, one more per accepted
//! patch. The host also keeps, per origin node, which of its patches the value includes (the
//! *marks*: the origin's last accepted `origin_seq`, and which of the [`HOLE_WINDOW`] before
//! it were not accepted), and a bounded *log* of the paths the most recent versions wrote.
//! Value, version, marks and log are a function of the accepted patches in version order, so
//! a replica that applied the same versions holds the host's state (marks only differ when
//! they are full and host and replica evict different origins, see below).
//!
//! Opening a document that does not exist creates it from the opener's default value. Opening
//! one that exists gives the opener the host's state, whatever its default: a default never
//! overwrites anything.
//!
//! # Patches
//! [`DocReplica::patch`] parses and validates the whole update, applies it to the local value
//! at once (optimistically), and sends it with an `origin_seq` (1, 2, 3... per document), the
//! version it was made against (`base`) and a wall-clock timestamp, which `$currentDate` uses
//! so that every replica computes the same value. The host takes patches one at a time, each
//! origin's in order:
//!
//! 1. A patch its marks show as accepted is a resend: it is answered with [`DocMsg::Ack`] and
//!    not applied again. One they show as not accepted (a later one of the same origin was)
//!    is answered with [`RejectReason::Earlier`].
//! 2. **Conflicts.** It is rejected if a patch accepted after `base` by **another** origin
//!    wrote the same path, a parent or a child of one of its paths ([`Path::overlaps`]).
//!    Patches on disjoint paths never conflict, and an origin's patches never conflict with
//!    each other (each was made on top of the previous ones). If `base` is older than the log
//!    window, the host cannot tell, and rejects it as [`RejectReason::Stale`].
//! 3. It is applied, all or nothing; a type error, or a result above
//!    [`DocLimits::max_value`] or [`MAX_DEPTH`], rejects it and changes nothing.
//! 4. Accepted, it becomes the next version and is broadcast ([`DocMsg::Patched`]) to every
//!    link that has the document open or is a witness (below), its origin's included. The
//!    origin's acknowledgement ([`DocMsg::Ack`], reported as [`DocEvt::Accepted`]) waits for
//!    a witness to hold it.
//!
//! # Witnesses: what an acknowledgement means
//! Every member is a **witness** unless configured otherwise ([`ReplicaConfig::witness`];
//! an observer never is): on each hub link it says so ([`DocMsg::Witness`]), the host sends
//! it the state of every document of the group and every broadcast, opened or not, and the
//! witness confirms the version it holds after each batch it received ([`DocMsg::Have`]). A
//! document it has not opened is kept *passive*: as encoded JSON text plus the patches since,
//! folded in once they take half its size (about its size as JSON, where a parsed value takes
//! several times that), within [`DocLimits::max_docs`] and [`DocLimits::max_witness_bytes`]
//! (past them it keeps no copy and says so: [`DocEvt::NotWitnessed`]); opening it later
//! starts from that copy.
//!
//! The host answers a patch once a witness other than the host's own node
//! ([`HostConfig::node`]) and other than the patch's origin holds its version, and at once
//! when no such witness has the document. [`DocEvt::Accepted`] carries how many held it
//! (`witnesses`). So:
//!
//! - **With `witnesses` ≥ 1, the patch survives the death of any one process**: the host's
//!   (a witness is a survivor, and the new host adopts the newest state among the survivors),
//!   the origin's (a one-shot writer may exit the moment it has its answer), or a witness's
//!   (the host still has it). It is lost only if the host and every witness that held it die
//!   before the new host gathers (or are unreachable for the whole grace), or if two hubs run
//!   at once.
//! - **With `witnesses` = 0** (a group of the host's node and the writer alone, or whose
//!   witnesses are full), the patch is in the host's history only, and the writer's while it
//!   lives: it is lost if the host dies before another member holds it, and the new host
//!   serves an older version (see [`HostEvt::NewerStateIgnored`]).
//!
//! The price is one hop: the witness's receipt travels to the host before the answer goes
//! out (`ipc-pubsub bench doc` measures both).
//!
//! A rejection ([`DocMsg::Rejected`]) goes to the origin only, with the host's version and
//! what conflicted (path, version, origin) or what failed (operator and path). The link being
//! FIFO, the origin has already applied every broadcast up to that version: it drops the
//! patch, recomputes its local value (confirmed value plus the patches still pending) and
//! reports the rejection. A replica that finds a broadcast skipping a version, or failing to
//! apply, asks for the host's state ([`DocMsg::Resync`]) instead of diverging.
//!
//! # Failover
//! When the hub dies its links die with it; replicas keep their confirmed state and their
//! pending patches. The new hub's host starts **gathering**: on [`ReplicaInput::HubUp`] every
//! replica opens its documents again, sending its confirmed state (version, value, marks,
//! log). The host adopts, per document, the state with the highest version (all are prefixes
//! of one history, so that is the most complete) and answers nobody until the gathering is
//! over ([`HostInput::Settled`]: a [`Member`](crate::Member) sends it once every node of the
//! hub's history has reopened its documents or is gone, confirmed dead at once or after the
//! reconnection grace; or [`HostConfig::gather_timeout`]). Then it sends
//! its state to every opener ([`DocMsg::State`]). Each replica replaces its confirmed state,
//! answers those of its pending patches that the adopted marks show as accepted (or not), and
//! sends the others again, in order, with their original `origin_seq`. A replica sends a
//! document's patches only after the host's state for it arrived on the current link, so the
//! host never holds patches while gathering, and a patch is never applied twice: one that no
//! survivor had seen accepted is applied now, once, so an `$inc` is neither lost nor doubled.
//!
//! # What is guaranteed, and what is not
//! - Every replica converges to the host's value, and the host's value is the accepted
//!   patches applied in version order.
//! - Every patch a replica issues gets exactly one answer ([`DocEvt::Accepted`] or
//!   [`DocEvt::Rejected`]), across any number of hub failovers, as long as the replica lives
//!   and keeps the document open (a patch pending at [`DocReplica::close`], or when the host
//!   refuses the opening, gets none), and an answer never lies: accepted means in the host's
//!   history, rejected means not applied.
//! - A patch acknowledged with a witness survives any one death (see above). An origin keeps
//!   each of its patches until the acknowledgement, also after it saw the broadcast, and sends
//!   it again to a new host, which applies it if its state lacks it, or acknowledges it once a
//!   witness holds its state if not.
//! - **Not guaranteed:** a patch acknowledged with no witness, or one whose every holder
//!   died, is lost if the host dies; so is an accepted patch if two hubs run at once. The new
//!   host then serves an older version. A replica that comes back with a newer state is given
//!   the host's (the host reports [`HostEvt::NewerStateIgnored`]), and its pending patches
//!   made against the lost versions are checked against everything since the host's version.
//! - Marks remember at most [`DocLimits::max_origins`] origins per document. An origin evicted
//!   from them (a node declared gone first, oldest first; else the least recently active) that
//!   then sends again a patch accepted before the eviction would have it applied twice. Nodes
//!   come and go with random ids, so pruning is needed, but a node expelled for a stall comes
//!   back with the same id and resends: that is why a gone node is only evicted once the marks
//!   are full, not when it goes.
//!
//! # Bounds
//! Every length from a peer is checked against [`DocLimits`] before anything is allocated for
//! it: message size ([`DocLimits::max_chunk`]; larger values and states travel in several
//! messages, reassembled up to [`DocLimits::max_body`]), names, documents per group and per
//! node, value size and depth, pending patches per document, marks, log. A patch larger than
//! one message is refused locally ([`DocError::TooLarge`]).
//!
//! # Wiring
//! [`Member`](crate::Member) does all of this (see its module docs); a driver of a member
//! only calls [`Member::open_doc`](crate::Member::open_doc),
//! [`Member::patch_doc`](crate::Member::patch_doc) and reads
//! [`MemberEvt::Doc`](crate::MemberEvt::Doc). Without a member:
//!
//! - **Hub.** Start a [`DocHost`] with the hub ([`HostConfig::node`]: the hub's own node). Feed each document message from a spoke's
//!   link as [`HostInput::Bytes`] with the link and the spoke's node (its patches' origin),
//!   [`HostInput::PeerDown`] when the link goes, [`HostInput::NodeGone`] when the hub declares
//!   a node gone, and [`HostInput::Settled`] when every node the hub inherited has reopened
//!   its documents or is gone (as [`Member`](crate::Member) does; a hub with no inherited
//!   history cannot know who is out there and waits for the reconnection grace). Call [`DocHost::handle_timeout`] at
//!   [`DocHost::poll_timeout`]. [`HostOutput::Send`] goes to that link,
//!   [`HostOutput::Disconnect`] closes it.
//! - **Node.** One [`DocReplica`] per node, across hub changes (a witness, by default). [`ReplicaInput::HubUp`] once
//!   the spoke is synced with a hub, [`ReplicaInput::HubDown`] when its link goes, each
//!   document message from the hub as [`ReplicaInput::Bytes`]. [`ReplicaOutput::Send`] goes to
//!   the hub, [`ReplicaOutput::Disconnect`] closes the hub link.
//! - Host and replicas use the same [`DocLimits`]; `max_chunk` must leave room for the
//!   topology frame around a message.
//!
//! ```
//! use std::time::Instant;
//! use ipc_proto::doc::{
//!     DocHost, DocReplica, HostConfig, HostInput, HostOutput, ReplicaConfig, ReplicaInput,
//!     ReplicaOutput,
//! };
//! use ipc_proto::wire::encode_doc;
//! use ipc_proto::{NodeId, PeerId};
//! use serde_json::json;
//!
//! let now = Instant::now();
//! let node = NodeId::new(7).expect("non-zero");
//! let mut host = DocHost::new(HostConfig::default(), now);
//! host.handle(now, HostInput::Settled)?; // a new group: nothing to gather
//! let mut replica = DocReplica::new(ReplicaConfig::new(node), now);
//! replica.handle(now, ReplicaInput::HubUp)?; // the spoke is synced with the hub
//! replica.open(now, "config", json!({"retries": 3}))?;
//! replica.patch(now, "config", &json!({"$inc": {"retries": 1}}), 1_780_000_000_000)?;
//! // What a driver does over the hub link, until both sides are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(out) = replica.poll_output() {
//!         if let ReplicaOutput::Send(msg) = out {
//!             let data = encode_doc(&msg);
//!             host.handle(now, HostInput::Bytes { peer: PeerId(1), node, data: &data })?;
//!             moved = true;
//!         }
//!     }
//!     while let Some(out) = host.poll_output() {
//!         if let HostOutput::Send { msg, .. } = out {
//!             replica.handle(now, ReplicaInput::Bytes(&encode_doc(&msg)))?;
//!             moved = true;
//!         }
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(replica.value("config"), Some(&json!({"retries": 4})));
//! assert_eq!(host.version("config"), Some(1));
//! # Ok::<(), ipc_proto::doc::DocError>(())
//! ```

mod host;
pub(crate) mod path;
mod replica;
pub(crate) mod state;
pub(crate) mod types;
pub(crate) mod update;

#[cfg(test)]
mod tests;

pub use host::{DocHost, HostConfig, HostEvt, HostInput, HostOutput};
pub use path::{MAX_PATH_BYTES, MAX_SEGMENTS, Path, PathError};
pub use replica::{DocEvt, DocReplica, ReplicaConfig, ReplicaInput, ReplicaOutput};
pub use update::{ApplyContext, MAX_PADDING, Operator, Update, UpdateError, ValueKind};

pub use types::{
    DocError, DocLimits, HOLE_WINDOW, MAX_DEPTH, Observed, PatchId, Refusal, RejectReason, Scope,
    differs_at,
};

#[doc(no_inline)]
pub use crate::wire::DocMsg;
