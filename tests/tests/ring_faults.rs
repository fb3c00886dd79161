//! Shared-memory rings across `kill -9`: a peer process killed mid-stream, as a publisher or as
//! a subscriber, leaves nothing behind in the survivor, this process. Its fds and its memfd
//! mappings (rings and segments) go back to what they were before the link, the pool ranges
//! its publisher lent to the dead subscriber come back, and the pool serves the next one.
//!
//! The survivor runs the group's hub as well, so what it holds for the peer's hub link (the
//! socket, the pidfd that watches the peer's process) must go too. It is this process on the
//! std driver (where its publisher's `segments_in_use` is looked at too), or a calloop peer in a
//! child whose `/proc` is read (where its pool's mappings, trimmed only once every range came
//! back, say the same).
//!
//! These tests count what this whole process holds: they run one at a time ([`alone`]), and
//! nothing else is in this binary. Every wait is on a condition with a deadline; every child
//! is killed and reaped when its [`Child`] drops, also when a test fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ipc_driver_std::{
    Incoming, Node, NodeId, Publisher, PublisherOptions, SegmentsInUse, SendMode, Subscription,
    SubscriptionOptions,
};
use ipc_tests::held::Held;
use ipc_tests::peer::{Driver, fnv1a64, index_of, payload};
use ipc_tests::{Child, Value, WAIT, event, group, is, node_id, wait_until};

/// The topics of a publishing peer, each named after its mode, and their payloads' sizes.
const TOPICS: [(&str, usize); 3] = [("inline", 200), ("pooled", 100_000), ("fresh", 300_000)];

/// Serialises the tests of this binary: each counts what the whole process holds.
fn alone() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The survivor: this process's node, first in a new group, so it runs the hub.
fn survivor(g: &str) -> Node {
    let node = Node::builder("survivor").group(g).join().expect("join");
    node.wait_synced(WAIT).expect("synced");
    assert!(node.is_hub(), "the first node of a group runs its hub");
    node
}

/// The most of each kind of fd and mapping seen at once.
fn note_max(max: &mut Held, now: Held) {
    for (name, n) in now.fds {
        let m = max.fds.entry(name).or_insert(0);
        *m = (*m).max(n);
    }
    for (name, n) in now.maps {
        let m = max.maps.entry(name).or_insert(0);
        *m = (*m).max(n);
    }
}

fn messages_on(topic: &'static str) -> impl Fn(&Value) -> bool {
    move |v| event(v) == "message" && v["topic"] == topic
}

// ---- the survivor subscribes ----

/// What the survivor's subscriptions received.
#[derive(Debug, Default)]
struct Got {
    /// Messages received from each publisher on each topic (index into [`TOPICS`]).
    received: HashMap<(NodeId, usize), u64>,
    /// The next seq due from each publisher on each topic.
    next: HashMap<(NodeId, usize), u64>,
    /// Losses told: topic, reason, first and last seq.
    lost: Vec<(&'static str, &'static str, u64, u64)>,
    /// What was wrong with messages: out of order, wrong size, mode or bytes.
    bad: Vec<String>,
}

impl Got {
    /// Messages received from `publisher` on each topic.
    fn received(&self, publisher: NodeId) -> [u64; 3] {
        std::array::from_fn(|i| self.received.get(&(publisher, i)).copied().unwrap_or(0))
    }

    /// Messages of `publisher` on each topic received or told lost: all it published, once
    /// they have come.
    fn accounted(&self, publisher: NodeId) -> [u64; 3] {
        std::array::from_fn(|i| {
            self.next
                .get(&(publisher, i))
                .map_or(0, |next| next.saturating_sub(1))
        })
    }
}

/// A thread reading the survivor's subscriptions (one per topic of [`TOPICS`]), checking and
/// dropping each message as it comes, until dropped.
struct Reader {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Got>>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(subs: Vec<Subscription>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Got::default()));
        let thread = thread::spawn({
            let (stop, got) = (Arc::clone(&stop), Arc::clone(&got));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut idle = true;
                    for (i, sub) in subs.iter().enumerate() {
                        while let Ok(item) = sub.try_recv_incoming() {
                            idle = false;
                            check(&mut got.lock().expect("got"), i, item);
                        }
                    }
                    if idle
                        && let Ok(item) = subs[0].recv_incoming_timeout(Duration::from_millis(1))
                    {
                        check(&mut got.lock().expect("got"), 0, item);
                    }
                }
            }
        });
        Self {
            stop,
            got,
            thread: Some(thread),
        }
    }

    fn got(&self) -> MutexGuard<'_, Got> {
        self.got.lock().expect("got")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks one item of topic `i` (in order, intact, by its mode) and counts it.
fn check(got: &mut Got, i: usize, item: Incoming<ipc_driver_std::Message>) {
    let (topic, size) = TOPICS[i];
    match item {
        Incoming::Message(m) => {
            *got.received.entry((m.publisher(), i)).or_insert(0) += 1;
            let next = got.next.entry((m.publisher(), i)).or_insert(1);
            let index = index_of(&m);
            let intact = m.len() == size && fnv1a64(&m) == fnv1a64(&payload(index, size));
            if m.seq() != *next || index + 1 != m.seq() || !intact || m.via().name() != topic {
                got.bad.push(format!(
                    "{topic}: seq {} (due {next}), index {index}, {} bytes via {}, intact {intact}",
                    m.seq(),
                    m.len(),
                    m.via()
                ));
            }
            *next = m.seq() + 1;
        }
        Incoming::Lost(l) => {
            got.lost.push((topic, l.reason.name(), l.first, l.last));
            got.next.insert((l.publisher, i), l.last + 1);
        }
    }
}

/// Starts a publishing peer in `g` with a publisher per topic of [`TOPICS`], and waits until
/// it sees the survivor `me` subscribed to each.
fn publishing_peer(driver: Driver, g: &str, name: &str, me: NodeId) -> Child {
    let mut p = Child::peer(driver, g, name, &[]);
    for (topic, _) in TOPICS {
        p.send(&format!("publisher {topic} {topic}"));
    }
    let me = me.to_string();
    for (topic, _) in TOPICS {
        p.wait_for(WAIT, |v| is(v, "subscribed", &me) && v["topic"] == topic);
    }
    p
}

/// Batches of a stream that is killed: far more than get through before the kill.
const ROUNDS: usize = 1000;

/// Has the publishing peer `victim` publish [`ROUNDS`] batches of 10 messages on each topic
/// of [`TOPICS`], the topics taking turns.
fn publish_rounds(victim: &mut Child) {
    for _ in 0..ROUNDS {
        for (topic, size) in TOPICS {
            victim.send(&format!("publish {topic} {size} 10"));
        }
    }
}

/// Reads the last lines of the killed `victim` (up to the end of its output), checks that it
/// was killed mid-stream (it published fewer batches than its first message and
/// [`publish_rounds`]), and reaps it; how many batches it published.
fn published_before_the_kill(mut victim: Child) -> usize {
    victim.drain_for(WAIT);
    let published = victim.events("published").len();
    assert!(
        published <= 3 * ROUNDS,
        "killed mid-stream: {published} of {} batches published",
        3 * ROUNDS + 1
    );
    published
}

/// The peer `next` leaves in good order, and then the survivor (`pid`; `None`: this process)
/// holds what it did before the links (`baseline`).
fn leaves(mut next: Child, pid: Option<u32>, baseline: &Held) {
    next.close_stdin();
    assert_eq!(next.wait_exit(WAIT), Some(0), "next left");
    Held::wait_for(pid, baseline, WAIT);
}

/// Checks that `c` printed no `name` event.
fn assert_no(c: &Child, name: &str) {
    let seen = c.events(name);
    assert!(seen.is_empty(), "{name}: {seen:#?}");
}

fn a_publisher_killed_mid_stream(driver: Driver) {
    let _alone = alone();
    let g = group();
    let node = survivor(&g);
    let subs = TOPICS
        .iter()
        .map(|(t, _)| {
            node.subscription(t, SubscriptionOptions::block(WAIT))
                .expect("subscription")
        })
        .collect();
    let reader = Reader::start(subs);
    let baseline = Held::now();

    let mut victim = publishing_peer(driver, &g, "victim", node.id());
    let victim_id = node_id(&victim.node_id());
    // One message first: the stream starts on a link that is up, whose subscriber has stated
    // its terms (until then a publisher holds back for 1 s at most, then drops, and a burst
    // on a loaded machine would lose its tail).
    victim.send("publish inline 200 1");
    wait_until("the first message", || {
        reader.got().received(victim_id)[0] == 1
    });
    publish_rounds(&mut victim);
    let mut used = Held::default();
    wait_until(
        "messages of every mode, a ring and a pool segment mapped",
        || {
            note_max(&mut used, Held::now());
            let got = reader.got().received(victim_id);
            got.iter().all(|&n| n >= 30)
                && used.rings() > 0
                && used.maps.contains_key("ipc-pubsub-pool")
        },
    );
    victim.kill();
    let at_kill = reader.got().received(victim_id);
    let published = published_before_the_kill(victim);

    Held::wait_for(None, &baseline, WAIT);
    {
        let got = reader.got();
        assert!(got.bad.is_empty(), "{:#?}", got.bad);
        // `Block`, and this process reads all the time: nothing is dropped for it (what was
        // in flight when the publisher died is gone, and nobody is left to tell).
        assert!(got.lost.is_empty(), "told lost: {:?}", got.lost);
    }

    // The subscriptions go on with the next publisher, which leaves in good order.
    let mut next = publishing_peer(driver, &g, "next", node.id());
    let next_id = node_id(&next.node_id());
    for (topic, size) in TOPICS {
        next.send(&format!("publish {topic} {size} 20"));
    }
    wait_until(
        "the next publisher's messages, received or told lost",
        || reader.got().accounted(next_id) == [20; 3],
    );
    leaves(next, None, &baseline);
    let got = reader.got();
    assert!(got.bad.is_empty(), "{:#?}", got.bad);
    eprintln!(
        "{driver:?} publisher killed after {published} batches, {at_kill:?} messages received \
         (inline, pooled, fresh); at most {used:?} held (before: {baseline:?}); lost {:?}",
        got.lost
    );
}

#[test]
fn a_std_publisher_killed_mid_stream_leaves_nothing_in_its_subscriber() {
    a_publisher_killed_mid_stream(Driver::Std);
}

#[test]
fn a_calloop_publisher_killed_mid_stream_leaves_nothing_in_its_subscriber() {
    a_publisher_killed_mid_stream(Driver::Calloop);
}

// ---- the survivor publishes ----

/// A thread publishing on the survivor's pooled and inline publishers, as fast as they take
/// it, until dropped.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Stream {
    fn start(pooled: Arc<Publisher>, inline: Arc<Publisher>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = thread::spawn({
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    pooled
                        .publish(&payload(n, 100_000))
                        .map_err(|e| format!("pooled #{n}: {e}"))?;
                    inline
                        .publish(&payload(n, 200))
                        .map_err(|e| format!("inline #{n}: {e}"))?;
                    n += 1;
                    sent.store(n, Ordering::Relaxed);
                }
                Ok(())
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The thread stopped by itself: a publish failed ([`stop`](Self::stop) says how).
    fn failed(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread; what went wrong, if anything.
    fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("running");
        t.join().expect("the publishing thread")
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a subscribing peer with `subscriptions` (`TOPIC POLICY DEPTH`), and waits until
/// the survivor's view has it subscribed to each.
fn subscribing_peer(
    driver: Driver,
    node: &Node,
    g: &str,
    name: &str,
    subscriptions: &[&str],
) -> Child {
    let mut s = Child::peer(driver, g, name, &[]);
    for sub in subscriptions {
        s.send(&format!("subscription {sub}"));
    }
    let id = node_id(&s.node_id());
    node.wait_view(WAIT, |v| {
        v.node(id)
            .is_some_and(|n| n.subscribes.len() == subscriptions.len())
    })
    .expect("routed");
    s
}

/// The survivor publishes pooled and inline messages; its subscriber peer is killed mid-stream
/// with pool ranges lent to it: running, or first stopped (`SIGSTOP`, so that ranges surely
/// stay out and the publisher waits on the full link when the kill comes).
fn a_subscriber_killed_mid_stream(driver: Driver, stopped: bool) {
    let _alone = alone();
    let g = group();
    let node = survivor(&g);
    let publisher = |topic: &str, mode| {
        let options = PublisherOptions {
            mode,
            ..PublisherOptions::default()
        };
        Arc::new(node.publisher_with(topic, "x", options).expect("publisher"))
    };
    let pooled = publisher("pooled", SendMode::Pooled);
    let inline = publisher("inline", SendMode::Inline);
    assert_eq!(node.segments_in_use(), SegmentsInUse::default());
    let baseline = Held::now();

    let subscriptions = ["pooled block 16", "inline block 16"];
    let mut victim = subscribing_peer(driver, &node, &g, "victim", &subscriptions);
    let stream = Stream::start(Arc::clone(&pooled), Arc::clone(&inline));
    victim.wait_count(WAIT, 50, messages_on("pooled"));
    victim.wait_count(WAIT, 50, messages_on("inline"));
    assert!(
        victim
            .seen
            .iter()
            .all(|v| event(v) != "message" || v["via"] == v["topic"]),
        "each message by its topic's mode"
    );
    let mut used = Held::default();
    wait_until("a ring mapped, pool ranges lent", || {
        note_max(&mut used, Held::now());
        used.rings() > 0 && node.segments_in_use().pool > 0
    });
    if stopped {
        victim.stop();
        // Nothing comes back from a stopped subscriber: what is lent stays lent.
        wait_until("pool ranges lent to the stopped subscriber", || {
            node.segments_in_use().pool > 0
        });
    }
    let lent = node.segments_in_use();
    let sent = stream.sent();
    victim.kill();
    drop(victim);

    // The publisher goes on: nothing waits for the dead subscriber.
    wait_until("publishing goes on", || {
        stream.sent() >= sent + 100 || stream.failed()
    });
    stream.stop().expect("published");
    // Every range lent to it comes back, the idle pool is trimmed, and this process holds
    // what it did before the link.
    wait_until("every segment back", || {
        node.segments_in_use() == SegmentsInUse::default()
    });
    wait_until("the idle pool trimmed", || node.pool_bytes() == 0);
    Held::wait_for(None, &baseline, WAIT);

    // The pool serves the next subscriber, which leaves in good order.
    let mut next = subscribing_peer(driver, &node, &g, "next", &["pooled block 16"]);
    for i in 0..20 {
        pooled.publish(&payload(i, 100_000)).expect("publish");
    }
    let got = next.wait_count(WAIT, 20, messages_on("pooled"));
    for (i, v) in got.iter().enumerate() {
        let want = format!("{:016x}", fnv1a64(&payload(i as u64, 100_000)));
        assert_eq!(v["fnv1a64"], want.as_str(), "intact: {v}");
        assert_eq!(v["via"], "pooled", "{v}");
    }
    wait_until("the next subscriber's segments back", || {
        node.segments_in_use() == SegmentsInUse::default()
    });
    next.close_stdin();
    assert_eq!(next.wait_exit(WAIT), Some(0), "next left");
    wait_until("the idle pool trimmed again", || node.pool_bytes() == 0);
    Held::wait_for(None, &baseline, WAIT);
    eprintln!(
        "{driver:?} subscriber killed{} after {sent} messages each, {lent:?} lent; \
         at most {used:?} held (before: {baseline:?})",
        if stopped { " stopped" } else { "" }
    );
}

#[test]
fn a_std_subscriber_killed_mid_stream_gives_back_what_it_was_lent() {
    a_subscriber_killed_mid_stream(Driver::Std, false);
}

#[test]
fn a_calloop_subscriber_killed_mid_stream_gives_back_what_it_was_lent() {
    a_subscriber_killed_mid_stream(Driver::Calloop, false);
}

#[test]
fn a_stopped_std_subscriber_killed_gives_back_what_it_was_lent() {
    a_subscriber_killed_mid_stream(Driver::Std, true);
}

// ---- a calloop survivor, in a child ----

/// A calloop peer, first in group `g` (so it runs the hub), whose `/proc` is read.
fn calloop_survivor(g: &str) -> Child {
    let mut c = Child::peer(Driver::Calloop, g, "survivor", &[]);
    c.wait_for(WAIT, |v| event(v) == "became_hub");
    c
}

/// Waits until `c`'s events show it subscribed to (`subscribed`) or publishing
/// (`topic_announced`) every one of `topics`: its commands for them have run.
fn wait_own(c: &mut Child, what: &str, topics: &[&str]) {
    let me = c.node_id();
    for topic in topics {
        c.wait_for(WAIT, |v| is(v, what, &me) && v["topic"] == *topic);
    }
}

#[test]
fn a_publisher_killed_mid_stream_leaves_nothing_in_a_calloop_subscriber() {
    a_publisher_killed_mid_stream_in_a_calloop_subscriber("");
}

/// The same with the subscriber's loop polling its rings (`SubscriptionOptions::spin`): it
/// sees the hang-up while it polls, and parks what is left.
#[test]
fn a_publisher_killed_mid_stream_leaves_nothing_in_a_spinning_calloop_subscriber() {
    a_publisher_killed_mid_stream_in_a_calloop_subscriber(" 300");
}

/// A calloop subscriber whose subscriptions end with `spin` (the peer protocol's
/// `SPIN_US`, with its space, or nothing).
fn a_publisher_killed_mid_stream_in_a_calloop_subscriber(spin: &str) {
    let _alone = alone();
    let g = group();
    let mut survivor = calloop_survivor(&g);
    let pid = Some(survivor.pid());
    let topics = TOPICS.map(|(t, _)| t);
    for topic in topics {
        survivor.send(&format!("subscription {topic} block 64{spin}"));
    }
    wait_own(&mut survivor, "subscribed", &topics);
    let baseline = Held::of(pid);

    let me = node_id(&survivor.node_id());
    let mut victim = publishing_peer(Driver::Std, &g, "victim", me);
    let victim_id = victim.node_id();
    let from_victim = |v: &Value| event(v) == "message" && v["node"] == victim_id.as_str();
    // One message first: the stream starts on a link that is up (see above).
    victim.send("publish inline 200 1");
    survivor.wait_for(WAIT, from_victim);
    publish_rounds(&mut victim);
    let mut used = Held::default();
    let deadline = Instant::now() + WAIT;
    loop {
        note_max(&mut used, Held::of(pid));
        let enough = topics.map(|topic| {
            let n = survivor
                .seen
                .iter()
                .filter(|v| from_victim(v) && v["topic"] == topic);
            n.count() >= 30
        });
        if enough.iter().all(|&e| e) && used.rings() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "messages of every mode on a ring: {enough:?}, at most {used:?} held"
        );
        survivor.drain_for(Duration::from_millis(5));
    }
    victim.kill();
    let published = published_before_the_kill(victim);
    Held::wait_for(pid, &baseline, WAIT);

    // Every message of the victim's that came was intact, in order, by its mode.
    for (topic, size) in TOPICS {
        let mut due = 1;
        let of_victim = |v: &&Value| v["topic"] == topic && v["node"] == victim_id.as_str();
        for v in survivor.seen.iter().filter(of_victim) {
            match event(v) {
                "message" => {
                    let want = format!("{:016x}", fnv1a64(&payload(due - 1, size)));
                    assert_eq!(v["seq"], due, "in order: {v}");
                    assert_eq!(v["fnv1a64"], want.as_str(), "intact: {v}");
                    assert_eq!(v["via"], topic, "by its mode: {v}");
                    due += 1;
                }
                "lost" => due = v["last"].as_u64().expect("last") + 1,
                _ => {}
            }
        }
    }

    // The subscriptions go on with the next publisher, which leaves in good order.
    let mut next = publishing_peer(Driver::Std, &g, "next", me);
    for (topic, size) in TOPICS {
        next.send(&format!("publish {topic} {size} 20"));
    }
    let next_id = next.node_id();
    survivor.wait_count(WAIT, 60, |v| {
        event(v) == "message" && v["node"] == next_id.as_str()
    });
    leaves(next, pid, &baseline);
    assert_no(&survivor, "failed");
    // `Block`, and the survivor reads all the time: nothing is dropped for it.
    assert_no(&survivor, "lost");
    eprintln!(
        "calloop subscriber (spin{spin}): publisher killed after {published} batches; \
         at most {used:?} held (before: {baseline:?})"
    );
}

#[test]
fn a_subscriber_killed_mid_stream_gives_back_what_a_calloop_publisher_lent() {
    let _alone = alone();
    let g = group();
    let mut survivor = calloop_survivor(&g);
    let pid = Some(survivor.pid());
    survivor.send("publisher pooled pooled");
    survivor.send("publisher inline inline");
    wait_own(&mut survivor, "topic_announced", &["pooled", "inline"]);
    let baseline = Held::of(pid);

    let mut victim = Child::peer(Driver::Std, &g, "victim", &[]);
    victim.send("subscription pooled block 16");
    victim.send("subscription inline block 16");
    let victim_id = victim.node_id();
    for topic in ["pooled", "inline"] {
        survivor.wait_for(WAIT, |v| {
            is(v, "subscribed", &victim_id) && v["topic"] == topic
        });
    }
    // Far more than gets through before the kill.
    for _ in 0..ROUNDS {
        survivor.send("publish pooled 100000 10");
        survivor.send("publish inline 200 10");
    }
    victim.wait_count(WAIT, 50, messages_on("pooled"));
    victim.wait_count(WAIT, 50, messages_on("inline"));
    let mut used = Held::default();
    wait_until("a ring and pool segments mapped", || {
        note_max(&mut used, Held::of(pid));
        used.rings() > 0 && used.maps.contains_key("ipc-pubsub-pool")
    });
    victim.kill();
    survivor.drain_for(Duration::ZERO);
    let published = survivor.events("published").len();
    assert!(
        published < 2 * ROUNDS,
        "killed mid-stream: {published} batches published"
    );
    drop(victim);

    // The publisher goes on: every batch is published, with nobody left to wait for.
    survivor.wait_count(WAIT, 2 * ROUNDS, |v| event(v) == "published");
    // Every range lent to the dead subscriber comes back (the pool trims only what is free),
    // and the child holds what it did before the link.
    Held::wait_for(pid, &baseline, WAIT);

    // The pool serves the next subscriber, which leaves in good order.
    let mut next = Child::peer(Driver::Std, &g, "next", &[]);
    next.send("subscription pooled block 16");
    let next_id = next.node_id();
    survivor.wait_for(WAIT, |v| {
        is(v, "subscribed", &next_id) && v["topic"] == "pooled"
    });
    survivor.send("publish pooled 100000 20");
    let got = next.wait_count(WAIT, 20, messages_on("pooled"));
    for v in &got {
        let index = v["index"].as_u64().expect("index");
        let want = format!("{:016x}", fnv1a64(&payload(index, 100_000)));
        assert_eq!(v["fnv1a64"], want.as_str(), "intact: {v}");
        assert_eq!(v["via"], "pooled", "{v}");
    }
    leaves(next, pid, &baseline);
    assert_no(&survivor, "failed");
    eprintln!(
        "calloop publisher: subscriber killed after {published} batches; \
         at most {used:?} held (before: {baseline:?})"
    );
}
