//! The wire protocols: topology frames between spokes and their hub, data frames on data links.
//!
//! A stream of frames, each `[length: u32 LE][tag: u8][body]`, where `length` counts the tag and
//! the body and is checked against [`Limits::max_frame`] before anything is buffered. Bodies
//! are serde + bincode 2 (standard configuration: little-endian varints); only this module's
//! codec knows that, so the encoding can be swapped without touching the machines. Tags are
//! explicit and stable ([`Frame`] and [`DataFrame`] list them), and the first frame a spoke
//! sends, [`Frame::Hello`], starts with the protocol version so that a hub can refuse an
//! incompatible peer cleanly; data links start with [`DataFrame::Hello`], versioned the same
//! way ([`DATA_VERSION`]).
//!
//! Frames may arrive in any chunking ([`Deframer`]); a driver over `SOCK_SEQPACKET` sends each
//! [`Transmit`](crate::Transmit) as one record, and one transmit never exceeds
//! [`Limits::max_frame`] plus the 4-byte length, so no record needs to hold a whole history:
//! histories travel in chunks.

mod app;
mod codec;
mod data;
mod deframer;
pub(crate) mod doc;
mod frame;
mod limits;

pub use app::{AppCounter, MAX_APP_COUNTERS, MAX_COUNTER_NAME, check_app_counters};
pub use codec::{decode, encode, encode_into};
pub use data::{
    DATA_VERSION, DataFrame, DataStats, GuardStats, INLINE_OVERHEAD, MessageHeader, MessageRef,
    Policy, SlotRef, TopicStats, WitnessStats, decode_data, encode_data, encode_data_into,
    encode_ring_offer, hello_takes_rings, inline_head, ring_offer,
};
pub use deframer::Deframer;
pub use doc::{DocMsg, decode_doc, encode_doc};
pub use frame::{CloseReason, Frame, Hello, OwnChange, PROTOCOL_VERSION, Welcome};
pub use limits::Limits;
