//! The bridge's counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a bridge has done so far ([`Bridge::counters`](crate::Bridge::counters)); also published
/// in the group, as JSON, on the bridge's [`STATS_TOPIC`](crate::STATS_TOPIC), and set on its
/// node as application counters ([`to_pairs`](Self::to_pairs)), which `ipc-pubsub status`
/// shows.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub struct BridgeCounters {
    /// Local messages put to Zenoh.
    pub exported: u64,
    /// Their payload bytes.
    pub exported_bytes: u64,
    /// Local messages that never reached Zenoh: dropped by the bridge's `DropOldest`
    /// subscriptions while the network was slow, or lost before them (what the subscriptions
    /// were told lost).
    pub export_dropped: u64,
    /// Zenoh samples published in the group.
    pub imported: u64,
    /// Their payload bytes.
    pub imported_bytes: u64,
    /// Zenoh samples not published in the group: the import queue was full, the group
    /// refused them, or the topic limit was reached.
    pub import_dropped: u64,
    /// Zenoh samples refused as malformed: a bad attachment, an oversized payload, a key
    /// outside the prefix.
    pub refused: u64,
    /// Samples this bridge put itself and got back (dropped: never echoed).
    pub echoes: u64,
}

impl BridgeCounters {
    /// The counters by name, in this order: what the stats topic's JSON holds, and what the
    /// bridge sets on its node for `ipc-pubsub status` (`Node::set_counters`).
    ///
    /// ```
    /// let pairs = ipc_bridge_zenoh::BridgeCounters::default().to_pairs();
    /// assert_eq!(pairs[0], ("exported", 0));
    /// ```
    pub fn to_pairs(&self) -> [(&'static str, u64); 8] {
        [
            ("exported", self.exported),
            ("exported_bytes", self.exported_bytes),
            ("export_dropped", self.export_dropped),
            ("imported", self.imported),
            ("imported_bytes", self.imported_bytes),
            ("import_dropped", self.import_dropped),
            ("refused", self.refused),
            ("echoes", self.echoes),
        ]
    }

    /// The counters as one JSON object (what the stats topic carries).
    ///
    /// ```
    /// let json = ipc_bridge_zenoh::BridgeCounters::default().to_json();
    /// assert!(json.starts_with("{\"exported\":0,"));
    /// ```
    pub fn to_json(&self) -> String {
        let fields: Vec<String> = self
            .to_pairs()
            .iter()
            .map(|(name, value)| format!("\"{name}\":{value}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// The live counters, shared by the bridge's threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) exported: AtomicU64,
    pub(crate) exported_bytes: AtomicU64,
    pub(crate) export_dropped: AtomicU64,
    pub(crate) imported: AtomicU64,
    pub(crate) imported_bytes: AtomicU64,
    pub(crate) import_dropped: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) echoes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BridgeCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeCounters {
            exported: get(&self.exported),
            exported_bytes: get(&self.exported_bytes),
            export_dropped: get(&self.export_dropped),
            imported: get(&self.imported),
            imported_bytes: get(&self.imported_bytes),
            import_dropped: get(&self.import_dropped),
            refused: get(&self.refused),
            echoes: get(&self.echoes),
        }
    }
}
