//! A bridge from an ipc-pubsub group to [Zenoh](https://zenoh.io): chosen topics across hosts.
//!
//! A group lives on one host. A [`Bridge`] joins it as a node (named `zenoh-bridge` by
//! default, so `status` lists it) and opens a Zenoh session beside it:
//!
//! - **export**: every local topic matching an export pattern is subscribed to (`DropOldest`,
//!   [`BridgeConfig::depth`]: a slow network never blocks the group, and its drops are
//!   counted) and each message is put to Zenoh under `<prefix>/<topic>` (the prefix is
//!   `ipc/<group>` by default), without a copy on the bridge's side: the sample's payload
//!   borrows the message's buffer or mapping. Zenoh fragments large payloads itself.
//! - **import**: every Zenoh sample under `<prefix>/<pattern>` of an import pattern is
//!   published in the group on its topic by the bridge's node (one copy, from Zenoh's buffers
//!   into the pool slot that subscribers map).
//! - **metadata**: mime type, publisher id and sequence number travel as the sample's
//!   attachment ([`Meta`], bounded and checked: a malformed one is refused and counted).
//! - **no loops**: a bridge never exports what its own node or another bridge of its group
//!   published (bridges are the nodes publishing [`STATS_TOPIC`]), drops samples it put
//!   itself (by the origin in [`Meta`]), and its Zenoh publishers and subscribers only match
//!   other sessions.
//! - **topology**: each topic a node of the group publishes or subscribes to is declared as a
//!   Zenoh liveliness token `<prefix>/topology/<node id>/{publishes,subscribes}/<topic>`, so
//!   remote tools see the group (`z_liveliness_sub -k 'ipc/robot/topology/**'`).
//! - **counters**: [`Bridge::counters`], and once a second as JSON on [`STATS_TOPIC`] in the
//!   group and as the node's application counters, which `ipc-pubsub status` shows for the
//!   bridge's node (names as in [`BridgeCounters::to_pairs`]).
//!
//! Patterns are Zenoh key expressions over topic names (`camera/*`, `remote/**`); a topic that
//! is not a plain key expression (wildcard characters, empty chunks) is not bridged.
//!
//! ```no_run
//! use ipc_bridge_zenoh::{Bridge, BridgeConfig, peer_config};
//!
//! // Host 1 exports its cameras; host 2 runs the same with `&[], &["tcp/host1:7447"]` and
//! // `.import("camera/**")`.
//! let mut config = BridgeConfig::new("robot");
//! config
//!     .export("camera/**")?
//!     .zenoh(peer_config(&["tcp/0.0.0.0:7447"], &[])?);
//! let bridge = Bridge::start(config)?;
//! # Ok::<(), ipc_bridge_zenoh::BridgeError>(())
//! ```
//!
//! The binary `ipc-pubsub-zenoh` runs one bridge (`ipc-pubsub-zenoh run --help`) and measures
//! the bridge against bare Zenoh (`ipc-pubsub-zenoh bench`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bridge;
mod config;
mod counters;
mod error;
mod meta;

pub use bridge::{Bridge, STATS_MIME, STATS_TOPIC};
pub use config::{
    BridgeConfig, DEFAULT_DEPTH, DEFAULT_IMPORT_QUEUE_BYTES, DEFAULT_MAX_PAYLOAD, peer_config,
};
pub use counters::BridgeCounters;
pub use error::BridgeError;
pub use meta::{MAX_ATTACHMENT, MAX_MIME, Meta, MetaError, PLAIN_MIME};

/// The 64-bit FNV-1a hash of `bytes`: the checksum the bench and the tests put in payloads.
///
/// ```
/// assert_eq!(ipc_bridge_zenoh::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(ipc_bridge_zenoh::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
