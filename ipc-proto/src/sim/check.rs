//! Invariant checks a user calls on a [`Sim`]: each returns `Ok(())` or a [`Violation`] that
//! says what broke. The topology checks hold once the group is quiet (after
//! [`Sim::settle`]); the document checks once [`docs_quiet`] holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::app::NodeIx;
use super::group::Sim;
use crate::doc::{ApplyContext, DocEvt, PatchId};
use crate::{Event, NodeId, View};

/// A broken invariant, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

fn fail<T>(why: String) -> Result<T, Violation> {
    Err(Violation(why))
}

/// Every topology check: [`quiet`] and [`no_flaps_or_ghosts`] over [`audit`].
pub fn all(sim: &Sim) -> Result<(), Violation> {
    quiet(sim)?;
    no_flaps_or_ghosts(&audit(sim))
}

/// The topology checks of a quiet group: [`one_hub`], [`converged`], [`histories_equal`],
/// [`reported_once`] and [`terms_monotonic`].
pub fn quiet(sim: &Sim) -> Result<(), Violation> {
    one_hub(sim)?;
    converged(sim)?;
    histories_equal(sim)?;
    reported_once(sim)?;
    terms_monotonic(sim)
}

/// Exactly one hub runs and holds the hub address, and there were never two at once.
pub fn one_hub(sim: &Sim) -> Result<(), Violation> {
    if let Some(v) = sim.violations.first() {
        return fail(v.clone());
    }
    let hubs: Vec<_> = sim.hubs().collect();
    match hubs[..] {
        [_] => Ok(()),
        _ => fail(format!("{} hubs run: {hubs:?}", hubs.len())),
    }
}

/// Every member follows the one hub and its view is the truth: each member with its own
/// topics, and nobody else (no ghosts).
pub fn converged(sim: &Sim) -> Result<(), Violation> {
    match sim.divergence() {
        None => Ok(()),
        Some(why) => fail(format!("not converged: {why}\n{}", sim.describe())),
    }
}

/// Every member's history holds the hub's records.
pub fn histories_equal(sim: &Sim) -> Result<(), Violation> {
    let Some(hub) = sim.hubs().next() else {
        return fail("no hub".into());
    };
    let want = sim.history_of(hub);
    for ix in sim.members() {
        if sim.history_of(ix) != want {
            return fail(format!(
                "{}'s history differs from the hub's",
                sim.nodes[ix.0].name
            ));
        }
    }
    Ok(())
}

/// Each member reported each change once: every event it emitted changed its view (no
/// repeats), and its events replay onto an empty view to exactly its view (none missing).
pub fn reported_once(sim: &Sim) -> Result<(), Violation> {
    for ix in sim.members() {
        let n = &sim.nodes[ix.0];
        let mut v = View::default();
        for (t, e) in &n.events {
            if !v.apply(e) {
                let at = sim.ms(*t);
                return fail(format!("{} reported {e:?} at {at:.1} ms twice", n.name));
            }
        }
        if v.summary() != n.member.view().summary() || v.hub() != n.member.view().hub() {
            return fail(format!("{}'s events do not replay to its view", n.name));
        }
    }
    Ok(())
}

/// Terms rise: every hub started with a term above every hub term its node had seen
/// ([`Event::HubChanged`]) before. Across the group terms may start again: a node that never
/// heard of a term cannot exceed it.
pub fn terms_monotonic(sim: &Sim) -> Result<(), Violation> {
    for &(at, ix, term) in &sim.hubs_started {
        let n = &sim.nodes[ix.0];
        let known = n
            .events
            .iter()
            .filter(|(t, _)| *t < at)
            .filter_map(|(_, e)| match e {
                Event::HubChanged { term, .. } => Some(*term),
                _ => None,
            })
            .max();
        if known.is_some_and(|k| term <= k) {
            let at = sim.ms(at);
            return fail(format!(
                "{} started a hub of {term:?} at {at:.1} ms, knowing {known:?}",
                n.name
            ));
        }
    }
    Ok(())
}

/// No member reported anything after `since` (the group stayed quiet).
pub fn silent_since(sim: &Sim, since: Instant) -> Result<(), Violation> {
    let late: Vec<_> = sim
        .nodes
        .iter()
        .flat_map(|n| {
            n.events
                .iter()
                .filter(|(t, _)| *t > since)
                .map(move |e| (&n.name, e))
        })
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    fail(format!(
        "{} events after quiescence at {:.1} ms, e.g. {:?}\n{}",
        late.len(),
        sim.ms(since),
        &late[..late.len().min(4)],
        sim.describe()
    ))
}

/// The most records any running machine's history holds beyond the live state.
pub(crate) fn beyond_live(sim: &Sim) -> usize {
    let mut excess = 0;
    for n in sim.nodes.iter().filter(|n| n.alive) {
        let mut histories = vec![n.member.spoke().history()];
        histories.extend(n.member.hub_machine().map(|h| h.history()));
        for h in histories {
            let live: usize = h
                .view()
                .nodes()
                .values()
                .map(|v| 1 + v.publishes.len() + v.subscribes.len())
                .sum();
            excess = excess.max(h.len().saturating_sub(live));
        }
    }
    excess
}

/// What [`audit`] found in every member's events, judged against what really happened.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Audit {
    /// Removal events about a node that was running without interruption and still held the
    /// state (it had not left, crashed, been frozen or changed its topics): a flap.
    pub spurious_removals: usize,
    /// Of those, the ones explained by the node being purged after the grace period (it did
    /// not reconnect in time).
    pub purged_flaps: usize,
    /// Events that re-add what a spurious removal took: the duplicates.
    pub duplicates: usize,
    /// Events about a node whose departure the group had recorded (a LEAVE minted) over a second
    /// before the observer started. They happen only when every node that knew of the departure
    /// is gone, and a node whose history predates it (it was stopped all along) becomes the hub
    /// or joins one that knows nothing newer; the hub purges them after its grace period.
    pub late_ghosts: usize,
    /// Late ghost joins not undone within one grace period of each hub that held them, counted
    /// in the running time of the observer and of those hubs (a stopped hub purges nobody
    /// until it resumes): zero.
    pub avoidable_ghosts: usize,
}

/// No flaps but purged ones, and every late ghost gone within a grace period.
pub fn no_flaps_or_ghosts(audit: &Audit) -> Result<(), Violation> {
    if audit.spurious_removals != audit.purged_flaps {
        return fail(format!(
            "a running node was reported gone (or its topic removed) without being purged: {audit:?}"
        ));
    }
    if audit.avoidable_ghosts > 0 {
        return fail(format!(
            "a long-departed node outlived a grace period: {audit:?}"
        ));
    }
    Ok(())
}

/// Classifies every event each member saw against what really happened.
pub fn audit(sim: &Sim) -> Audit {
    let explain = std::env::var("IPC_SIM_EXPLAIN").is_ok();
    let mut out = Audit::default();
    for obs in sim.members() {
        let n = &sim.nodes[obs.0];
        // What this observer removed spuriously and has not re-added yet.
        let mut owed: BTreeSet<(NodeId, Option<String>)> = BTreeSet::new();
        for (t, e) in &n.events {
            let (subject, topic) = subject(e);
            let Some(subject) = subject else { continue };
            let Some(six) = sim.ix_of(subject) else {
                continue;
            };
            let s = &sim.nodes[six.0];
            // The subject ended (crashed or left) well before the observer started, and a hub
            // had recorded its departure.
            if let Some(gone) = sim.gone_at.get(&subject)
                && s.ended
                    .is_some_and(|end| end + Duration::from_secs(1) < n.started)
                && *gone < n.started
            {
                if explain {
                    println!(
                        "GHOST at {:.1} ms: {} (started {:.1}) saw {:?} about {} (gone at {:.1}, ended {:?})",
                        sim.ms(*t),
                        n.name,
                        sim.ms(n.started),
                        e,
                        s.name,
                        sim.ms(*gone),
                        s.ended.map(|e| sim.ms(e)),
                    );
                }
                out.late_ghosts += 1;
                // Stale knowledge can bring a departed node back, but only until the hub that
                // accepted it purges it: within one grace period.
                if let Event::NodeJoined { .. } = e {
                    let deadline = ghost_deadline(sim, obs, *t);
                    let purged = n.events.iter().any(|(lt, le)| {
                        *lt >= *t
                            && *lt <= deadline
                            && matches!(le, Event::NodeLeft { node, .. } if *node == subject)
                    });
                    if !purged {
                        out.avoidable_ghosts += 1;
                    }
                }
            }
            let removal = matches!(
                e,
                Event::NodeLeft { .. } | Event::TopicRetracted { .. } | Event::Unsubscribed { .. }
            );
            // Steady: running, never frozen or expelled, since well before any keepalive could
            // have expelled it, and its topics unchanged for longer than a message takes.
            // A frozen observer handles, on resuming, what was sent while it slept, and a frozen
            // hub sequences on resuming what was asked of it meanwhile: judge the event from
            // when it may have been asked for, before such a freeze.
            let hosts = sim.hubs_started.iter().map(|(_, ix, _)| &sim.nodes[ix.0]);
            let judged = std::iter::once(n)
                .chain(hosts)
                .flat_map(|m| m.frozen_spans.iter())
                .filter(|&&(a, b)| a <= *t && b + Duration::from_millis(100) >= *t)
                .map(|&(a, _)| a)
                .min()
                .unwrap_or(*t);
            let before = sim.config.keepalive + Duration::from_millis(1_500);
            let since = judged
                .checked_sub(before)
                .unwrap_or(sim.epoch)
                .max(sim.epoch);
            let (changed, own) = sim.own_at(six, *t);
            let steady = sim.continuous(six, since, *t + Duration::from_millis(50))
                && (topic.is_none()
                    || judged
                        .checked_sub(Duration::from_millis(100))
                        .is_some_and(|j| changed < j));
            if removal && steady {
                let still_holds = match e {
                    Event::NodeLeft { .. } => true,
                    Event::TopicRetracted { topic, .. } => own.publishes.contains_key(topic),
                    Event::Unsubscribed { topic, .. } => own.subscribes.contains(topic),
                    _ => false,
                };
                if still_holds {
                    if explain {
                        let at = sim.ms(*t);
                        println!(
                            "SPURIOUS at {at:.1} ms: {} saw {e:?} about {}",
                            n.name, s.name
                        );
                    }
                    out.spurious_removals += 1;
                    if sim.purged.iter().any(|&(pt, id)| id == subject && pt <= *t) {
                        out.purged_flaps += 1;
                    }
                    owed.insert((subject, topic.clone()));
                }
            } else if !removal && owed.remove(&(subject, topic.clone())) {
                out.duplicates += 1;
            } else if matches!(e, Event::NodeJoined { .. }) {
                owed.retain(|(id, _)| *id != subject);
            }
        }
    }
    out
}

/// By when observer `obs`, told at `t` that a long-departed node joined, must have heard it
/// leave: one grace period (and a margin for the messages), counted in running time.
///
/// - The observer's: a frozen observer hears late, just after it resumes.
/// - Each hub's: a hub that dies within its grace hands the stale node to the next, whose grace
///   starts anew; and a hub the observer follows that is stopped (SIGSTOP) within its grace
///   cannot purge anyone until it resumes, so its stop is added to the deadline. While the hub
///   is stopped nothing can take the node out of the observer's view: only the hub sequences a
///   LEAVE, and its stopped process still holds the hub address, so no other node can take
///   over (seed 16187537116908072641: n3's hub, started with a stale history, was stopped
///   192 ms into its 200 ms grace, for 2.47 s, after a newcomer had taken its snapshot; it
///   declared the node gone the moment it resumed).
fn ghost_deadline(sim: &Sim, obs: NodeIx, t: Instant) -> Instant {
    let n = &sim.nodes[obs.0];
    let grace = sim.config.grace;
    let margin = Duration::from_millis(100);
    // The hubs the observer followed from `t` to `until`: the one in force at `t`, and every
    // one it changed to by `until`.
    let followed = |until: Instant| -> BTreeSet<NodeIx> {
        let mut hubs = BTreeSet::new();
        for (at, e) in &n.events {
            if *at > until {
                break;
            }
            if let Event::HubChanged { node, .. } = e {
                if *at <= t {
                    hubs.clear();
                }
                hubs.extend(sim.ix_of(*node));
            }
        }
        hubs
    };
    // The hubs' stops already added: each counts once.
    let mut added: BTreeSet<(NodeIx, usize)> = BTreeSet::new();
    let mut deadline = t + grace + margin;
    loop {
        let mut extended = n
            .frozen_spans
            .iter()
            .filter(|&&(a, b)| a <= deadline && b >= t)
            .map(|&(_, b)| b + margin)
            .chain(
                sim.hubs_started
                    .iter()
                    .filter(|(h, _, _)| *h >= t && *h <= deadline)
                    .map(|(h, _, _)| *h + grace + margin),
            )
            .fold(deadline, Instant::max);
        for hub in followed(deadline).into_iter().filter(|&h| h != obs) {
            for (i, &(a, b)) in sim.nodes[hub.0].frozen_spans.iter().enumerate() {
                if a <= deadline && b >= t && added.insert((hub, i)) {
                    extended += b - a.max(t);
                }
            }
        }
        if extended == deadline {
            return deadline;
        }
        deadline = extended;
    }
}

fn subject(e: &Event) -> (Option<NodeId>, Option<String>) {
    match e {
        Event::NodeJoined { info, .. } => (Some(info.id), None),
        Event::NodeLeft { node, .. } => (Some(*node), None),
        Event::TopicAnnounced { node, topic, .. } | Event::TopicRetracted { node, topic } => {
            (Some(*node), Some(format!("p:{topic}")))
        }
        Event::Subscribed { node, topic, .. } | Event::Unsubscribed { node, topic } => {
            (Some(*node), Some(format!("s:{topic}")))
        }
        Event::HubChanged { .. } => (None, None),
    }
}

// ---- documents ----

/// Whether document `doc` is quiet: the group has converged, the hub's document host serves
/// it, every member that opened it is synced with it at the host's version, nothing pending,
/// and every witness that did not open it holds the host's version of it.
pub fn docs_quiet(sim: &Sim, doc: &str) -> bool {
    if !sim.converged() {
        return false;
    }
    let Some(hub) = sim.hubs().next() else {
        return false;
    };
    let Some(host) = sim.nodes[hub.0].member.doc_host() else {
        return false;
    };
    if host.is_gathering() {
        return false;
    }
    let Some(version) = host.version(doc) else {
        return false;
    };
    sim.members().all(|ix| {
        let docs = sim.nodes[ix.0].member.docs();
        if !docs.is_open(doc) {
            return !holds_passively(sim, ix, doc) || witnessed(sim, ix, doc) == Some(version);
        }
        docs.is_synced(doc)
            && docs.pending(doc).next().is_none()
            && docs.version(doc) == Some(version)
    })
}

/// Whether member `ix` keeps `doc` without having opened it: it is a witness, and not the
/// host's node (whose host holds the document).
fn holds_passively(sim: &Sim, ix: NodeIx, doc: &str) -> bool {
    let m = &sim.nodes[ix.0].member;
    m.docs().is_witness() && !m.docs().is_open(doc) && m.doc_host().is_none()
}

/// The version of `doc` member `ix` keeps as a witness without having opened it.
fn witnessed(sim: &Sim, ix: NodeIx, doc: &str) -> Option<u64> {
    let docs = sim.nodes[ix.0].member.docs();
    docs.witnessed().find(|(d, _)| *d == doc).map(|(_, v)| v)
}

/// The document host of the (first) hub.
fn doc_host(sim: &Sim) -> Result<&crate::doc::DocHost, Violation> {
    sim.hubs()
        .next()
        .and_then(|h| sim.nodes[h.0].member.doc_host())
        .ok_or_else(|| Violation("no document host".into()))
}

/// Every member that opened `doc` holds the host's value as its value and as its confirmed
/// value, at the host's version, every witness that did not open it keeps the host's version
/// of it, and the host's value is the accepted patches, as the hosts broadcast them
/// (the last host to broadcast a version wins), applied in version order to `default` (with
/// the wall clock each was made at). Returns the host's value.
pub fn documents_equal(sim: &Sim, doc: &str, default: &Value) -> Result<Value, Violation> {
    let host = doc_host(sim)?;
    let (Some(value), Some(version)) = (host.value(doc), host.version(doc)) else {
        return fail(format!("the host does not serve {doc}"));
    };
    for ix in sim.members() {
        let docs = sim.nodes[ix.0].member.docs();
        if !docs.is_open(doc) {
            let kept = witnessed(sim, ix, doc);
            if holds_passively(sim, ix, doc) && kept != Some(version) {
                let name = &sim.nodes[ix.0].name;
                return fail(format!(
                    "witness {name} keeps {kept:?}, the host is at {version}"
                ));
            }
            continue;
        }
        let (held, confirmed) = (docs.value(doc), docs.confirmed(doc));
        if held != Some(value) || confirmed != Some(value) || docs.version(doc) != Some(version) {
            return fail(format!(
                "{} holds {held:?} (confirmed {confirmed:?}) at version {:?}, the host {value} \
                 at {version}",
                sim.nodes[ix.0].name,
                docs.version(doc)
            ));
        }
    }
    let mut replay = default.clone();
    for v in 1..=version {
        let Some(b) = sim.doc_history.get(&(doc.to_owned(), v)) else {
            return fail(format!("version {v} was never broadcast"));
        };
        let context = ApplyContext {
            now_unix_ms: b.wall_ms,
        };
        replay = b
            .update
            .applied(&replay, &context)
            .map_err(|e| Violation(format!("version {v} does not apply: {e}")))?;
    }
    if replay != *value {
        return fail(format!("replayed {replay}, the host holds {value}"));
    }
    Ok(value.clone())
}

/// No acknowledged version lost, none applied twice: every patch a member still running
/// issued was answered exactly once (accepted or rejected), no accepted one names a version
/// beyond the host's, and the patches it was told were accepted are exactly its patches in
/// the accepted history (as [`documents_equal`] replays it), in order.
pub fn no_acked_version_lost(sim: &Sim, doc: &str) -> Result<(), Violation> {
    let host_version = doc_host(sim)?
        .version(doc)
        .ok_or_else(|| Violation(format!("no host serves {doc}")))?;
    for n in sim.nodes.iter().filter(|n| n.is_member()) {
        let mut answers: BTreeMap<PatchId, usize> = BTreeMap::new();
        let mut accepted: BTreeSet<PatchId> = BTreeSet::new();
        for e in &n.doc_evts {
            match e {
                DocEvt::Accepted {
                    name, id, version, ..
                } if name == doc => {
                    *answers.entry(*id).or_default() += 1;
                    accepted.insert(*id);
                    if *version > host_version {
                        return fail(format!(
                            "{} was told version {version} holds {id}; the host is at {host_version}",
                            n.name
                        ));
                    }
                }
                DocEvt::Rejected { name, id, .. } if name == doc => {
                    *answers.entry(*id).or_default() += 1;
                }
                _ => {}
            }
        }
        let mut told = Vec::new();
        for (_, id) in n.patches.iter().filter(|(d, _)| d == doc) {
            if answers.get(id) != Some(&1) {
                return fail(format!(
                    "{} got {:?} answers to {id}",
                    n.name,
                    answers.get(id)
                ));
            }
            if accepted.contains(id) {
                told.push(&n.updates[id]);
            }
        }
        let history: Vec<_> = (1..=host_version)
            .filter_map(|v| sim.doc_history.get(&(doc.to_owned(), v)))
            .filter(|b| b.origin == n.id())
            .map(|b| &b.update)
            .collect();
        if history != told {
            return fail(format!(
                "{}: its patches in the history differ from those it was told were accepted:\n \
                 history {history:?}\n told    {told:?}",
                n.name
            ));
        }
    }
    Ok(())
}

/// The durability promise: every patch a node was told was accepted with at least one
/// witness (a node that has died since included) is in the accepted history (as
/// [`documents_equal`] replays it) as that node's patch; one told with no witness may be
/// missing only if a node that ran a hub died (crashed or was killed), and is counted. No
/// node's patch is in the history more often than it issued it (none applied twice, whatever
/// was resent). Patches are told apart by their updates: a node's equal updates count
/// together. Returns how many patches acknowledged with no witness were lost.
pub fn witnessed_patches_kept(sim: &Sim, doc: &str) -> Result<usize, Violation> {
    let host_version = doc_host(sim)?
        .version(doc)
        .ok_or_else(|| Violation(format!("no host serves {doc}")))?;
    let hub_died = sim
        .hubs_started
        .iter()
        .any(|(_, ix, _)| !sim.nodes[ix.0].alive && !sim.nodes[ix.0].leaving);
    let mut lost = 0;
    for n in &sim.nodes {
        // Per update of this node (updates are not ordered: a list): how many it issued, how
        // many it was told were accepted with a witness and with none, how many are in the
        // history.
        #[derive(Default)]
        struct Count {
            issued: usize,
            witnessed: usize,
            unwitnessed: usize,
            applied: usize,
        }
        let mut counts: Vec<(&crate::doc::Update, Count)> = Vec::new();
        fn count<'a, 'b>(
            counts: &'b mut Vec<(&'a crate::doc::Update, Count)>,
            u: &'a crate::doc::Update,
        ) -> &'b mut Count {
            let i = match counts.iter().position(|(x, _)| *x == u) {
                Some(i) => i,
                None => {
                    counts.push((u, Count::default()));
                    counts.len() - 1
                }
            };
            &mut counts[i].1
        }
        for (_, id) in n.patches.iter().filter(|(d, _)| d == doc) {
            count(&mut counts, &n.updates[id]).issued += 1;
        }
        for e in &n.doc_evts {
            if let DocEvt::Accepted {
                name,
                id,
                witnesses,
                ..
            } = e
                && name == doc
            {
                let c = count(&mut counts, &n.updates[id]);
                if *witnesses > 0 {
                    c.witnessed += 1;
                } else {
                    c.unwitnessed += 1;
                }
            }
        }
        for v in 1..=host_version {
            if let Some(b) = sim.doc_history.get(&(doc.to_owned(), v))
                && b.origin == n.id()
            {
                count(&mut counts, &b.update).applied += 1;
            }
        }
        for (u, c) in &counts {
            if c.applied > c.issued {
                return fail(format!(
                    "{}'s patch {u:?} is in the history {} times, issued {} times",
                    n.name, c.applied, c.issued
                ));
            }
            if c.applied < c.witnessed {
                return fail(format!(
                    "{}'s patch {u:?}, accepted with a witness {} times, is in the history {} \
                     times: the host is at {host_version}",
                    n.name, c.witnessed, c.applied
                ));
            }
            let missing = (c.witnessed + c.unwitnessed).saturating_sub(c.applied);
            if missing > 0 && !hub_died {
                return fail(format!(
                    "{}'s patch {u:?}, accepted with no witness, is lost, and no hub's node died",
                    n.name
                ));
            }
            lost += missing;
        }
    }
    Ok(lost)
}

/// What every subscribing application got ([`SimNode::received`](super::SimNode::received))
/// accounts for each publisher's messages: per node, topic and publisher, the messages and
/// losses it read are in strictly increasing order of sequence number (a [`Loss`] spans
/// `first..=last`), none twice, and from the first it read to the last, every message was
/// either delivered or reported lost: messages plus the losses' counts equal
/// `last - first + 1`. Every payload was its sequence number and no record carried a segment.
///
/// Holds at any time (what was read is a prefix of what will be); read what is queued first
/// ([`Sim::read_inboxes`]) to check everything that arrived.
///
/// [`Loss`]: crate::data::Loss
pub fn deliveries(sim: &Sim) -> Result<(), Violation> {
    use crate::data::Incoming;
    if let Some(v) = sim.data_violations.first() {
        return fail(v.clone());
    }
    for n in &sim.nodes {
        // (topic, publisher) -> (first seq read, last seq read, messages and losses told).
        let mut seen: BTreeMap<(&str, NodeId), (u64, u64, u64)> = BTreeMap::new();
        for (i, (topic, got)) in n.data.received.iter().enumerate() {
            let (publisher, first, last, count) = match got {
                Incoming::Message(m) => (m.publisher, m.seq, m.seq, 1),
                Incoming::Lost(l) => (l.publisher, l.first, l.last, l.count),
            };
            let what = || format!("{}'s entry {i} on `{topic}`: {got:?}", n.name);
            if first == 0 || first > last || count == 0 || count > last - first + 1 {
                return fail(format!("malformed {}", what()));
            }
            let (start, end, counted) =
                seen.entry((&**topic, publisher))
                    .or_insert((first, first - 1, 0));
            if first <= *end {
                return fail(format!(
                    "out of order or twice (after seq {end}): {}",
                    what()
                ));
            }
            if first != *end + 1 {
                return fail(format!(
                    "seq {}..={} of {publisher} neither delivered nor reported lost, before {}",
                    *end + 1,
                    first - 1,
                    what()
                ));
            }
            *end = last;
            *counted += count;
            if *counted != *end - *start + 1 {
                return fail(format!(
                    "{counted} messages and losses told for seq {start}..={end}: {}",
                    what()
                ));
            }
        }
    }
    Ok(())
}

/// Nothing went silently missing at the end: for every running subscriber and every running
/// publisher of a topic it takes, once the subscriber's application read anything of that
/// publisher there, the last it read (a message, or a loss up to it) is the publisher's last
/// message ([`SimNode::published`](super::SimNode::published)). Holds once the group is quiet
/// and the queues were read ([`Sim::read_inboxes`]); a subscriber that crashed, or a publisher
/// that crashed (its last messages may have died with it, unknown to anyone), is not checked.
///
/// Part of [`Schedule::run`](super::Schedule::run). A subscriber that rejoins (after an
/// expulsion, or a failed link) learns where each publisher's topic stands when the
/// publisher binds it on the new link, so a tail published while it was away is told lost
/// even if no message follows.
pub fn deliveries_complete(sim: &Sim) -> Result<(), Violation> {
    use crate::data::Incoming;
    for sub in sim.nodes.iter().filter(|n| n.alive) {
        let mut last: BTreeMap<(&str, NodeId), u64> = BTreeMap::new();
        for (topic, got) in &sub.data.received {
            let (publisher, seq) = match got {
                Incoming::Message(m) => (m.publisher, m.seq),
                Incoming::Lost(l) => (l.publisher, l.last),
            };
            let e = last.entry((&**topic, publisher)).or_insert(0);
            *e = (*e).max(seq);
        }
        for p in sim.nodes.iter().filter(|p| p.alive) {
            for (topic, &published) in &p.data.published {
                let Some(&read) = last.get(&(topic.as_str(), p.id())) else {
                    continue;
                };
                if read != published {
                    return fail(format!(
                        "{} read {}'s messages on `{topic}` up to seq {read}, of {published} \
                         published: the rest neither delivered nor reported lost",
                        sub.name, p.name
                    ));
                }
            }
        }
    }
    Ok(())
}
