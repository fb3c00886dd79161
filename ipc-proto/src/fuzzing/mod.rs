//! What the fuzz targets do with their input, shared by `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing in both.
//!
//! **Not a stable API.** Compiled only with the `arbitrary` feature, for this crate's own fuzzers
//! and tests; it changes whenever they need it to, in any release.
//!
//! Each target is a function of the raw input bytes: [`decode`], [`hub_ops`], [`spoke_ops`],
//! for the data plane [`data_decode`](fn@data_decode) and [`data_ops`], and for its
//! shared-memory ring [`ring_consume`] (arbitrary region contents and operations on both ends:
//! never a panic, only values or `RingError`s, and a FIFO while nobody wrote behind the ends'
//! backs) and [`ring_link`](fn@ring_link) (the same for a data link's two ends and its socket,
//! as the drivers use them: what was sent handed on in the order sent, ring messages and
//! socket records merged, messages held behind a socket record included). A violated invariant
//! panics, which is what a fuzzer reports as a crash. The op targets read their input with
//! [`Arbitrary::arbitrary_take_rest`], exactly as `libfuzzer-sys` does for a typed target, and
//! take the clock's origin as an argument: this crate reads no clock.
//!
//! Checked after every op of [`hub_ops`] and [`spoke_ops`], from outside the machine:
//! - `handle` returns `Err` only for a command, and a refused command changes nothing;
//! - after `handle_timeout`, `poll_timeout` is later than the latest instant the machine saw
//!   (nothing left due: a driver never spins);
//! - every [`Output::Transmit`] is whole frames that decode under the machine's limits, at most
//!   [`Limits::max_frame`] plus the length header;
//! - nothing is sent on a link after the machine emitted [`Output::Disconnect`] for it or saw
//!   its [`Input::PeerDown`], until the link comes up again, and the links the machine holds are
//!   exactly those it did not close;
//! - a history holds its records in strictly increasing position order, at most the live state
//!   plus the tombstone cap;
//! - a spoke: replaying every [`SpokeEvt::Topology`] event it emitted onto an empty [`View`]
//!   gives its view (no ghost, nothing missing), each event changes that replayed view, and its
//!   view is what its history adds up to.
//!
//! Checked by [`data_ops`], which plays the driver of one [`DataPlane`] (with a [`Pool`]) and
//! the peers at the ends of its links, after every op:
//! - `handle` returns `Err` only for a command, and a refused command changes nothing;
//! - after `handle_timeout`, `poll_timeout` is later than the latest instant the machine saw;
//! - every [`DataOutput::Transmit`] decodes with [`decode_data`] under the machine's limits and
//!   carries an fd exactly when its frame needs one; an attached segment is one the harness
//!   published, never a received one, and never a pool segment retired before;
//! - nothing is sent on a link after its [`DataInput::PeerDown`] or the machine's
//!   [`DataOutput::Disconnect`], until it is up again; nothing on a link being connected;
//! - what a link to a subscriber carries is what a correct subscriber accepts (Hello first,
//!   topics bound once, sequence numbers increasing, pooled ranges inside segments offered on
//!   the link, retires of offered segments only) and is what was published;
//! - every segment handed in with a record is delivered ([`DataOutput::Deliver`]) or released
//!   exactly once, never both, at once unless it is a pool segment's offer, and by the time
//!   its link goes at the latest; a pooled delivery is in a segment its link offered and still
//!   holds;
//! - a segment the harness published is released once per publication, never while a
//!   subscriber or a local delivery holds a range of it, and [`DataPlane::segment_refs`] is at
//!   least the ranges held (one per segment not released) and at most that plus one queued
//!   message per link that is not up;
//! - [`DataPlane::room`] is what the last [`DataEvt::Room`] said, `rejected` counts the
//!   [`DataEvt::PeerMisbehaved`] events, and no counter of [`DataPlane::stats`] decreases
//!   (the counters of a link go with it: not checked in an op where a link went).
//!
//! and at the end, once every link is gone and every delivery released: no reference left,
//! every published segment released, the pool idle.
//!
//! Every crash found goes into `tests/malformed_input.rs` as a test of its own (`#[ignore]`d
//! until fixed). While one is open, the harness may steer around it so that the fuzzers look
//! for others; say so here and at the detour, and drop the detour with the fix. Open, in
//! [`data_ops`]:
//! - `a_dropped_message_does_not_leave_its_retired_segment_offered`: the harness does not retire
//!   pool segments while an offer of one may still be queued on a link that is not up.
//!
//! [`Arbitrary::arbitrary_take_rest`]: arbitrary::Arbitrary::arbitrary_take_rest
//! [`Output::Transmit`]: crate::Output::Transmit
//! [`Output::Disconnect`]: crate::Output::Disconnect
//! [`Input::PeerDown`]: crate::Input::PeerDown
//! [`Limits::max_frame`]: crate::Limits::max_frame
//! [`SpokeEvt::Topology`]: crate::SpokeEvt::Topology
//! [`View`]: crate::View
//! [`DataPlane`]: crate::data::DataPlane
//! [`DataPlane::room`]: crate::data::DataPlane::room
//! [`DataPlane::segment_refs`]: crate::data::DataPlane::segment_refs
//! [`DataPlane::stats`]: crate::data::DataPlane::stats
//! [`Pool`]: crate::data::Pool
//! [`DataEvt::Room`]: crate::data::DataEvt::Room
//! [`DataEvt::PeerMisbehaved`]: crate::data::DataEvt::PeerMisbehaved
//! [`DataInput::PeerDown`]: crate::data::DataInput::PeerDown
//! [`DataOutput::Transmit`]: crate::data::DataOutput::Transmit
//! [`DataOutput::Disconnect`]: crate::data::DataOutput::Disconnect
//! [`DataOutput::Deliver`]: crate::data::DataOutput::Deliver
//! [`decode_data`]: crate::wire::decode_data

mod common;
mod data;
mod data_decode;
mod doc;
mod hub;
mod ring;
mod ring_link;
mod spoke;
mod wire;

pub use common::{ALLOWED_UID, LOCAL_NODE, TOPICS, Tick};
pub use data::{
    DataCase, DataOp, DataSetup, Link, PayloadOp, RecordOp, Seg, TermsOp, data_ops, run_data,
};
pub use data_decode::{
    data_decode, data_decode_bytes, data_frame_roundtrip, sanitize_data, tiny_data_limits,
};
pub use doc::doc_bytes;
pub use hub::{Cred, HubCase, HubOp, HubSetup, Inherited, hub_ops, run_hub};
pub use ring::{RingCase, RingOp, ring_consume, run_ring};
pub use ring_link::{LinkCase, LinkOp, ring_link, run_link};
pub use spoke::{CmdOp, SpokeCase, SpokeOp, SpokeSetup, Topic, run_spoke, spoke_ops};
pub use wire::{decode, decode_bytes, frame_roundtrip, sanitize};
