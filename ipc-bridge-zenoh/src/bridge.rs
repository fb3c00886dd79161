//! The bridge: a node of the group and a Zenoh session, with the threads between them.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipc_driver_std::{
    EventKinds, Incoming, Message, Node, NodeId, Policy, Publisher, SendMode, SubscriptionOptions,
    View,
};
use tracing::{debug, info, warn};
use zenoh::bytes::ZBytes;
use zenoh::key_expr::{OwnedKeyExpr, keyexpr};
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Subscriber;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample};
use zenoh::{Session, Wait};

use crate::counters::Counters;
use crate::meta::{MAX_ATTACHMENT, Meta, PLAIN_MIME};
use crate::{BridgeConfig, BridgeCounters, BridgeError};

/// The topic on which a bridge publishes its [`BridgeCounters`] in its group, as JSON, once a
/// second (it also sets them on its node, where `ipc-pubsub status` reads them). It also marks the node as a bridge: a bridge never exports what another bridge
/// published in its group (no loops through two Zenoh networks).
pub const STATS_TOPIC: &str = "ipc-bridge-zenoh/stats";

/// The mime of [`STATS_TOPIC`].
pub const STATS_MIME: &str = "application/json; x-ipc-bridge=zenoh";

/// How often the bridge's threads look at their stop flag and at the group's view.
const TICK: Duration = Duration::from_millis(100);

/// How often the counters go out on [`STATS_TOPIC`].
const STATS_EVERY: Duration = Duration::from_secs(1);

/// A running bridge between a group and Zenoh. Dropping it stops it (as [`stop`](Self::stop)).
///
/// Local messages on exported topics are put under `<prefix>/<topic>`, with a [`Meta`]
/// attachment (origin bridge, publisher, seq, mime); Zenoh samples under `<prefix>/<pattern>`
/// of an import pattern are published in the group on `<topic>` by the bridge's node. A message
/// is never echoed: the bridge does not export what its node (or another bridge's) published,
/// does not take back samples it put itself, and its Zenoh publishers and subscribers are
/// restricted to remote sessions.
///
/// ```no_run
/// use ipc_bridge_zenoh::{Bridge, BridgeConfig, peer_config};
///
/// let mut config = BridgeConfig::new("robot");
/// config
///     .export("camera/**")?
///     .import("remote/**")?
///     .zenoh(peer_config(&["tcp/0.0.0.0:7447"], &[])?);
/// let bridge = Bridge::start(config)?;
/// std::thread::sleep(std::time::Duration::from_secs(10));
/// println!("{:?}", bridge.counters());
/// bridge.stop();
/// # Ok::<(), ipc_bridge_zenoh::BridgeError>(())
/// ```
pub struct Bridge {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    subscribers: Vec<Subscriber<()>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("node", &self.shared.node.id())
            .field("zid", &self.shared.session.zid())
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

struct Shared {
    node: Node,
    session: Session,
    zid: [u8; 16],
    prefix: OwnedKeyExpr,
    config: BridgeConfig,
    counters: Arc<Counters>,
    /// Payload bytes of the samples in the import queue.
    queued_bytes: Arc<AtomicU64>,
    stop: AtomicBool,
    /// The group's bridges (nodes publishing [`STATS_TOPIC`]), this one included.
    bridges: RwLock<HashSet<NodeId>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn is_bridge(&self, node: NodeId) -> bool {
        node == self.node.id()
            || self
                .bridges
                .read()
                .expect("no thread panics holding the bridges lock")
                .contains(&node)
    }
}

impl Bridge {
    /// Joins the group, opens the Zenoh session and starts bridging.
    pub fn start(config: BridgeConfig) -> Result<Self, BridgeError> {
        let prefix =
            OwnedKeyExpr::autocanonize(config.key_prefix()).map_err(|e| BridgeError::Invalid {
                what: "key prefix",
                value: config.key_prefix(),
                reason: e.to_string(),
            })?;
        let mut builder = Node::builder(&config.name).group(config.group.clone());
        if let Some(dir) = &config.dir {
            builder = builder.dir(dir.clone());
        }
        let join_error = |source| BridgeError::Join {
            group: config.group.clone(),
            source,
        };
        let node = builder.join().map_err(join_error)?;
        let stats = node
            .publisher(STATS_TOPIC, STATS_MIME)
            .map_err(join_error)?;
        let events = node.events_of(EventKinds::GROUP);
        let session = zenoh::open(config.zenoh.clone())
            .wait()
            .map_err(BridgeError::zenoh)?;
        let zid = session.zid().to_le_bytes();
        info!(node = %node.id(), zid = %session.zid(), %prefix, "bridge started");
        let (tx, rx) = mpsc::sync_channel(config.import_queue);
        let shared = Arc::new(Shared {
            node,
            session,
            zid,
            prefix,
            config,
            counters: Arc::default(),
            queued_bytes: Arc::default(),
            stop: AtomicBool::new(false),
            bridges: RwLock::default(),
        });
        let mut bridge = Self {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            subscribers: Vec::new(),
        };
        // From here on, an error stops what started: dropping `bridge` does.
        let mut earlier: Vec<OwnedKeyExpr> = Vec::new();
        for pattern in &shared.config.import {
            let key = shared
                .prefix
                .join(pattern.as_str())
                .map_err(BridgeError::zenoh)?;
            let (tx, counters, queued) = (
                tx.clone(),
                Arc::clone(&shared.counters),
                Arc::clone(&shared.queued_bytes),
            );
            let (max_payload, max_queued) =
                (shared.config.max_payload, shared.config.import_queue_bytes);
            // Overlapping patterns: a sample is taken by the first subscriber whose pattern
            // matches it, never twice.
            let taken_before = earlier.clone();
            let subscriber = shared
                .session
                .declare_subscriber(key.clone())
                .allowed_origin(Locality::Remote)
                .callback(move |sample| {
                    if taken_before.iter().any(|k| k.includes(sample.key_expr())) {
                        return;
                    }
                    // Bounded in samples and in bytes before anything is queued.
                    let len = sample.payload().len();
                    if len > max_payload {
                        return Counters::add(&counters.refused, 1);
                    }
                    let len = len as u64;
                    let held = queued.fetch_add(len, Ordering::AcqRel);
                    if held + len > max_queued as u64 {
                        queued.fetch_sub(len, Ordering::AcqRel);
                        return Counters::add(&counters.import_dropped, 1);
                    }
                    match tx.try_send(sample) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            queued.fetch_sub(len, Ordering::AcqRel);
                            Counters::add(&counters.import_dropped, 1);
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            queued.fetch_sub(len, Ordering::AcqRel);
                        }
                    }
                })
                .wait()
                .map_err(BridgeError::zenoh)?;
            bridge.subscribers.push(subscriber);
            earlier.push(key);
        }
        drop(tx);
        let s = Arc::clone(&shared);
        bridge.threads.push(
            std::thread::Builder::new()
                .name("zenoh-bridge-import".into())
                .spawn(move || import_loop(&s, &rx))?,
        );
        let s = Arc::clone(&shared);
        bridge.threads.push(
            std::thread::Builder::new()
                .name("zenoh-bridge-sync".into())
                .spawn(move || sync_loop(&s, &stats, &events))?,
        );
        Ok(bridge)
    }

    /// The bridge's node in the group.
    pub fn node(&self) -> &Node {
        &self.shared.node
    }

    /// The Zenoh session's id (what [`Meta::origin`] carries).
    pub fn zid(&self) -> String {
        self.shared.session.zid().to_string()
    }

    /// The key expression topics are put under.
    pub fn key_prefix(&self) -> &str {
        self.shared.prefix.as_str()
    }

    /// What the bridge has done so far.
    pub fn counters(&self) -> BridgeCounters {
        self.shared.counters.snapshot()
    }

    /// Stops bridging: undeclares from Zenoh, joins the threads, closes the session and leaves
    /// the group.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for subscriber in self.subscribers.drain(..) {
            if let Err(e) = subscriber.undeclare().wait() {
                debug!("undeclaring a subscriber: {e}");
            }
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                warn!("a bridge thread panicked");
            }
        }
        if let Err(e) = self.shared.session.close().wait() {
            debug!("closing the zenoh session: {e}");
        }
    }
}

/// Follows the group's view: starts and stops the export workers, keeps the liveliness
/// tokens, publishes the counters and sets them on the node.
fn sync_loop(shared: &Arc<Shared>, stats: &Publisher, events: &ipc_driver_std::Events) {
    let mut exports: HashMap<String, Worker> = HashMap::new();
    let mut tokens: HashMap<String, LivelinessToken> = HashMap::new();
    // The view is looked at after a change of the group (its events) or of a worker, again one
    // tick later (the driver shows application threads its new view at the end of the wakeup
    // that sent the events, so an event can come first), and once a second.
    let mut dirty: u8 = 1;
    let mut last_stats: Option<Instant> = None;
    while !shared.stopping() {
        if events.recv_timeout(TICK).is_some() {
            dirty = 2;
            while events.try_recv().is_some() {}
        }
        exports.retain(|topic, w| {
            let running = !w.thread.is_finished();
            if !running {
                debug!(
                    topic,
                    "export worker ended; it restarts if the topic is still there"
                );
                dirty = dirty.max(1);
            }
            running
        });
        if dirty > 0 {
            dirty -= 1;
            let view = shared.node.view();
            *shared
                .bridges
                .write()
                .expect("no thread panics holding the bridges lock") = view
                .nodes()
                .values()
                .filter(|n| n.publishes.contains_key(STATS_TOPIC))
                .map(|n| n.info.id)
                .collect();
            reconcile_exports(shared, &view, &mut exports);
            if shared.config.liveliness {
                reconcile_tokens(shared, &view, &mut tokens);
            }
        }
        #[allow(clippy::disallowed_methods)] // a driver-side loop reads the clock
        let now = Instant::now();
        if last_stats.is_none_or(|t| now.duration_since(t) >= STATS_EVERY) {
            last_stats = Some(now);
            // And once a second anyway: an event may come before the view shows it.
            dirty = dirty.max(1);
            let counters = shared.counters.snapshot();
            if let Err(e) = stats.publish(counters.to_json().as_bytes()) {
                debug!("publishing the counters: {e}");
            }
            // The same figures for `ipc-pubsub status`, which reads them from the node.
            if let Err(e) = shared.node.set_counters(&counters.to_pairs()) {
                debug!("setting the node's counters: {e}");
            }
        }
    }
    for (_, worker) in exports.drain() {
        worker.stop.store(true, Ordering::Relaxed);
        if worker.thread.join().is_err() {
            warn!("an export thread panicked");
        }
    }
}

/// The key of `topic` under the prefix, if `topic` is a plain (canonical, wildcard-free)
/// Zenoh key expression.
fn topic_key(shared: &Shared, topic: &str) -> Option<OwnedKeyExpr> {
    let ke = keyexpr::new(topic).ok()?;
    if ke.is_wild() {
        return None;
    }
    shared.prefix.join(topic).ok()
}

/// The topics to export: published by a node that is not a bridge, matching an export
/// pattern, and expressible as a key.
fn wanted(shared: &Shared, view: &View) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for node in view.nodes().values() {
        if node.info.id == shared.node.id() || node.publishes.contains_key(STATS_TOPIC) {
            continue;
        }
        for topic in node.publishes.keys() {
            let Ok(ke) = keyexpr::new(topic.as_str()) else {
                continue;
            };
            if !ke.is_wild() && shared.config.export.iter().any(|p| p.includes(ke)) {
                out.insert(topic.clone());
            }
        }
    }
    out
}

struct Worker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

fn reconcile_exports(shared: &Arc<Shared>, view: &View, exports: &mut HashMap<String, Worker>) {
    let wanted = wanted(shared, view);
    let gone: Vec<String> = exports
        .keys()
        .filter(|t| !wanted.contains(*t))
        .cloned()
        .collect();
    for topic in gone {
        debug!(topic, "no publisher left: export stops");
        let worker = exports
            .remove(&topic)
            .expect("listed from the map just now");
        worker.stop.store(true, Ordering::Relaxed);
        // Joined before a new worker may subscribe to the topic again: the driver's
        // `Subscription::drop` unsubscribes the node from the topic, whichever other
        // subscription of the node still holds it.
        if worker.thread.join().is_err() {
            warn!(topic, "an export thread panicked");
        }
    }
    for topic in wanted {
        if exports.contains_key(&topic) {
            continue;
        }
        let Some(key) = topic_key(shared, &topic) else {
            continue;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, t) = (Arc::clone(shared), Arc::clone(&stop), topic.clone());
        let spawned = std::thread::Builder::new()
            // Not the topic in the name: a NUL in it would make `spawn` panic.
            .name("zenoh-bridge-export".into())
            .spawn(move || export_loop(&s, &t, key, &st));
        match spawned {
            Ok(thread) => {
                info!(topic, "exporting");
                exports.insert(topic, Worker { stop, thread });
            }
            Err(e) => warn!(topic, "cannot start an export thread: {e}"),
        }
    }
}

fn reconcile_tokens(shared: &Shared, view: &View, tokens: &mut HashMap<String, LivelinessToken>) {
    let mut wanted = BTreeSet::new();
    for node in view.nodes().values() {
        let kinds = [
            ("publishes", node.publishes.keys().collect::<Vec<_>>()),
            ("subscribes", node.subscribes.keys().collect()),
        ];
        for (kind, topics) in kinds {
            for topic in topics {
                if keyexpr::new(topic.as_str()).is_ok_and(|k| !k.is_wild()) {
                    wanted.insert(format!(
                        "{}/topology/{}/{kind}/{topic}",
                        shared.prefix, node.info.id
                    ));
                }
            }
        }
    }
    tokens.retain(|key, _| wanted.contains(key));
    for key in wanted {
        if let Entry::Vacant(slot) = tokens.entry(key) {
            match shared
                .session
                .liveliness()
                .declare_token(slot.key().clone())
                .wait()
            {
                Ok(token) => {
                    slot.insert(token);
                }
                Err(e) => debug!(key = slot.key(), "cannot declare a liveliness token: {e}"),
            }
        }
    }
}

/// Receives one exported topic and puts its messages to Zenoh, until told to stop or the
/// node is gone.
fn export_loop(shared: &Shared, topic: &str, key: OwnedKeyExpr, stop: &AtomicBool) {
    let options = SubscriptionOptions {
        policy: Policy::DropOldest,
        depth: shared.config.depth,
        max_payload: u64::try_from(shared.config.max_payload).unwrap_or(u64::MAX),
        ..SubscriptionOptions::default()
    };
    let sub = match shared.node.subscription(topic, options) {
        Ok(sub) => sub,
        Err(e) => return warn!(topic, "cannot subscribe: {e}"),
    };
    let zpub = match shared
        .session
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .allowed_destination(Locality::Remote)
        .wait()
    {
        Ok(p) => p,
        Err(e) => return warn!(topic, "cannot declare a zenoh publisher: {e}"),
    };
    let mut mimes: HashMap<NodeId, String> = HashMap::new();
    while !stop.load(Ordering::Relaxed) && !shared.stopping() {
        match sub.recv_incoming_timeout(TICK) {
            Ok(Incoming::Message(m)) => {
                if shared.is_bridge(m.publisher()) {
                    continue; // the bridge's own imports, or another bridge's: never echoed
                }
                let mime = match mimes.get(&m.publisher()) {
                    Some(mime) => mime.clone(),
                    None => match shared.node.declared_type(m.publisher(), topic) {
                        Some(mime) => mimes.entry(m.publisher()).or_insert(mime).clone(),
                        None => PLAIN_MIME.to_owned(),
                    },
                };
                let meta = Meta::new(shared.zid, m.publisher().get(), m.seq(), &mime);
                let len = m.len() as u64;
                match zpub.put(payload(m)).attachment(meta.encode()).wait() {
                    Ok(()) => {
                        Counters::add(&shared.counters.exported, 1);
                        Counters::add(&shared.counters.exported_bytes, len);
                    }
                    Err(e) => {
                        Counters::add(&shared.counters.export_dropped, 1);
                        debug!(topic, "put failed: {e}");
                    }
                }
            }
            Ok(Incoming::Lost(loss)) => Counters::add(&shared.counters.export_dropped, loss.count),
            Err(e) if e.is_final() => break,
            Err(_) => {}
        }
    }
}

/// The message's payload for Zenoh without a copy: the bytes stay in the message (its inline
/// buffer or its read-only mapping) until Zenoh lets them go.
fn payload(m: Message) -> ZBytes {
    ZBytes::from(Bytes::from_owner(m))
}

/// Publishes Zenoh's samples in the group, until the bridge stops.
fn import_loop(shared: &Shared, rx: &Receiver<Sample>) {
    let mut publishers: HashMap<String, Publisher> = HashMap::new();
    while !shared.stopping() {
        match rx.recv_timeout(TICK) {
            Ok(sample) => {
                import_one(shared, &mut publishers, &sample);
                let len = sample.payload().len() as u64;
                shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn import_one(shared: &Shared, publishers: &mut HashMap<String, Publisher>, sample: &Sample) {
    let counters = &shared.counters;
    let key = sample.key_expr().as_str();
    let topic = key
        .strip_prefix(shared.prefix.as_str())
        .and_then(|rest| rest.strip_prefix('/'));
    let Some(topic) = topic.filter(|t| *t != STATS_TOPIC) else {
        debug!(key, "refused: not a topic under the prefix");
        return Counters::add(&counters.refused, 1);
    };
    let meta = match sample.attachment() {
        None => None,
        Some(a) if a.len() > MAX_ATTACHMENT => {
            debug!(key, len = a.len(), "refused: attachment too long");
            return Counters::add(&counters.refused, 1);
        }
        Some(a) => match Meta::decode(&a.to_bytes()) {
            Ok(meta) => Some(meta),
            Err(e) => {
                debug!(key, "refused: {e}");
                return Counters::add(&counters.refused, 1);
            }
        },
    };
    if meta.as_ref().is_some_and(|m| m.origin == shared.zid) {
        return Counters::add(&counters.echoes, 1);
    }
    let data = sample.payload();
    let len = data.len();
    if len > shared.config.max_payload {
        debug!(key, len, "refused: payload too large");
        return Counters::add(&counters.refused, 1);
    }
    let full = publishers.len() >= shared.config.max_imported_topics;
    let publisher = match publishers.entry(topic.to_owned()) {
        Entry::Occupied(slot) => slot.into_mut(),
        Entry::Vacant(_) if full => {
            debug!(topic, "dropped: imported topics at their maximum");
            return Counters::add(&counters.import_dropped, 1);
        }
        Entry::Vacant(slot) => {
            let mime = meta.as_ref().map_or(PLAIN_MIME, |m| m.mime.as_str());
            match shared.node.publisher(topic, mime) {
                Ok(p) => {
                    info!(topic, mime, "importing");
                    slot.insert(p)
                }
                Err(e) => {
                    // At debug: the topic comes from a peer, which may send many.
                    debug!(topic, "cannot publish in the group: {e}");
                    return Counters::add(&counters.import_dropped, 1);
                }
            }
        }
    };
    let sent = if publisher.mode_for(len) == SendMode::Inline {
        publisher.publish(&data.to_bytes())
    } else {
        // One copy, from Zenoh's buffers into the slot the subscribers map.
        publisher.loan(len).and_then(|mut loan| {
            let mut at = 0;
            for slice in data.slices() {
                loan[at..at + slice.len()].copy_from_slice(slice);
                at += slice.len();
            }
            publisher.send(loan)
        })
    };
    match sent {
        Ok(()) => {
            Counters::add(&counters.imported, 1);
            Counters::add(&counters.imported_bytes, len as u64);
        }
        Err(e) => {
            debug!(topic, "publishing an imported sample: {e}");
            Counters::add(&counters.import_dropped, 1);
        }
    }
}
