//! Order and loss: a publisher's messages over several links (an old link's backlog read
//! alongside a new link's messages), and a subscription's [`Inbox`] after the data plane. Per
//! publisher, what a subscription gets is increasing, and every message from its first to its
//! last is either delivered or reported lost, exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;

use super::links::{feed_s, hello, subscriber};
use super::*;

fn msg(seq: u64) -> (DataFrame, &'static [u8]) {
    (DataFrame::Inline(MessageHeader { topic: 1, seq }), b"m")
}

/// What came out of the data plane: delivered seqs and losses, in order.
#[derive(Debug, PartialEq)]
enum Out {
    Seq(u64),
    Lost(u64, u64, LossReason),
}

fn outs(out: Vec<DataOutput>) -> Vec<Out> {
    out.into_iter()
        .filter_map(|o| match o {
            DataOutput::Deliver(d) => Some(Out::Seq(d.seq)),
            DataOutput::Lost(l) => Some(Out::Lost(l.first, l.last, l.reason)),
            _ => None,
        })
        .collect()
}

#[allow(clippy::disallowed_methods)] // the test's epoch
fn epoch() -> Instant {
    Instant::now()
}

/// A subscriber of "t" with a link from [`P`], past its Hello and binding.
fn greeted(now: Instant, link: PeerId) -> DataPlane {
    let mut s = subscriber(now);
    let cred = Some(cred_of(P));
    s.handle(now, DataInput::PeerUp { peer: link, cred })
        .expect("up");
    feed_s(&mut s, now, link, &hello(id(P)), &[]);
    s
}

#[test]
fn an_old_links_backlog_never_takes_a_publisher_backwards() {
    let now = epoch();
    let mut s = subscriber(now);
    let (old, new) = (PeerId(40), PeerId(41));
    for link in [old, new] {
        let cred = Some(cred_of(P));
        s.handle(now, DataInput::PeerUp { peer: link, cred })
            .expect("up");
        feed_s(&mut s, now, link, &hello(id(P)), &[]);
    }
    let mut got = Vec::new();
    for (link, seq) in [
        (old, 1),
        (old, 2),
        (new, 100),
        (old, 3),
        (new, 101),
        (old, 4),
    ] {
        got.extend(outs(feed_s(&mut s, now, link, &[msg(seq)], &[])));
    }
    assert_eq!(
        got,
        [
            Out::Seq(1),
            Out::Seq(2),
            Out::Lost(3, 99, LossReason::Relinked),
            Out::Seq(100),
            Out::Seq(101),
        ],
        "3 and 4 came after 100: discarded, told lost before it"
    );
    let stats = s.stats().received;
    assert_eq!(
        stats.len(),
        1,
        "one publisher, whatever its links: {stats:?}"
    );
    assert_eq!((stats[0].messages, stats[0].missed), (4, 97));
}

#[test]
fn a_hole_on_one_link_is_the_publishers_and_after_expulsion_it_says_so() {
    let now = epoch();
    let mut s = subscriber(now);
    let (old, new) = (PeerId(40), PeerId(41));
    let cred = Some(cred_of(P));
    s.handle(now, DataInput::PeerUp { peer: old, cred })
        .expect("up");
    feed_s(&mut s, now, old, &hello(id(P)), &[]);
    let got = outs(feed_s(&mut s, now, old, &[msg(1), msg(5)], &[]));
    assert_eq!(
        got,
        [
            Out::Seq(1),
            Out::Lost(2, 4, LossReason::Publisher),
            Out::Seq(5)
        ]
    );
    s.expelled();
    // The old link's backlog comes first, whole; the first hole after the expulsion is its
    // doing, on whichever link.
    let got = outs(feed_s(&mut s, now, old, &[msg(6)], &[]));
    assert_eq!(got, [Out::Seq(6)]);
    s.handle(now, DataInput::PeerUp { peer: new, cred })
        .expect("up");
    feed_s(&mut s, now, new, &hello(id(P)), &[]);
    let got = outs(feed_s(&mut s, now, new, &[msg(50)], &[]));
    assert_eq!(got, [Out::Lost(7, 49, LossReason::Expelled), Out::Seq(50)]);
    let got = outs(feed_s(&mut s, now, new, &[msg(52)], &[]));
    assert_eq!(
        got,
        [Out::Lost(51, 51, LossReason::Publisher), Out::Seq(52)]
    );
    // A publisher that kept its link through the expulsion (it saw this node leave and
    // rejoin at once): the hole is still the expulsion's.
    s.expelled();
    let got = outs(feed_s(&mut s, now, new, &[msg(60)], &[]));
    assert_eq!(got, [Out::Lost(53, 59, LossReason::Expelled), Out::Seq(60)]);
}

#[test]
fn a_publishers_last_seq_tells_what_it_dropped_at_the_end() {
    let now = epoch();
    let link = PeerId(40);
    let mut s = greeted(now, link);
    let last = |seq| (DataFrame::Last(MessageHeader { topic: 1, seq }), &b""[..]);
    let bye = (DataFrame::Goodbye, &b""[..]);
    let got = outs(feed_s(
        &mut s,
        now,
        link,
        &[msg(1), msg(2), last(5), bye],
        &[],
    ));
    assert_eq!(
        got,
        [
            Out::Seq(1),
            Out::Seq(2),
            Out::Lost(3, 5, LossReason::Publisher)
        ]
    );
    assert_eq!(s.stats().received[0].missed, 3);
    assert!(s.stats().rejected == 0, "a Last is no violation");
}

#[test]
fn the_last_seq_of_a_publisher_that_lost_nothing_tells_nothing() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"one".to_vec()));
    t.publish("t", Payload::Inline(b"two".to_vec()));
    // The subscriber leaves the routes of the publisher: it closes the link.
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Routes(Routes::from_view(&view("t", &[])))),
    )
    .expect("routes");
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.lost.is_empty(), "{:?}", t.lost);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

#[test]
fn a_new_subscription_starts_afresh() {
    let now = epoch();
    let link = PeerId(40);
    let mut s = greeted(now, link);
    assert_eq!(
        outs(feed_s(&mut s, now, link, &[msg(1)], &[])),
        [Out::Seq(1)]
    );
    for cmd in [
        DataCmd::Leave { topic: "t".into() },
        DataCmd::Take {
            topic: "t".into(),
            terms: Terms::default(),
        },
    ] {
        s.handle(now, DataInput::Cmd(cmd)).expect("valid");
    }
    // What was published while not subscribed was not wanted: no loss.
    assert_eq!(
        outs(feed_s(&mut s, now, link, &[msg(9)], &[])),
        [Out::Seq(9)]
    );
}

/// A message as the inbox sees it: publisher and seq.
#[derive(Clone, Debug, PartialEq)]
struct M(NodeId, u64);

impl Sequenced for M {
    fn publisher(&self) -> NodeId {
        self.0
    }
    fn seq(&self) -> u64 {
        self.1
    }
}

/// Checks what a subscription got, per publisher: increasing, and from its first to its last
/// seq every message delivered or reported lost, once. Returns (delivered, lost) per publisher.
fn check_stream(got: &[Incoming<M>]) -> BTreeMap<NodeId, (u64, u64, u64, u64)> {
    // publisher -> (first, next expected, delivered, lost)
    let mut seen: BTreeMap<NodeId, (u64, u64, u64, u64)> = BTreeMap::new();
    for item in got {
        let (publisher, first, last, n, delivered) = match item {
            Incoming::Message(m) => (m.0, m.1, m.1, 1, true),
            Incoming::Lost(l) => (l.publisher, l.first, l.last, l.count, false),
        };
        assert!(first <= last && n >= 1 && n <= last - first + 1, "{item:?}");
        let e = seen.entry(publisher).or_insert((first, first, 0, 0));
        assert!(first >= e.1, "{item:?} goes back (next expected {})", e.1);
        e.1 = last + 1;
        if delivered {
            e.2 += 1;
        } else {
            e.3 += n;
        }
    }
    for (p, (first, next, delivered, lost)) in &seen {
        assert_eq!(
            delivered + lost,
            next - first,
            "{p}: {delivered} delivered + {lost} lost over seqs {first}..{next}"
        );
    }
    seen
}

#[test]
fn an_inbox_reports_its_drops_in_their_place() {
    let (a, b) = (id(1), id(2));
    let mut inbox = Inbox::new(Arc::from("t"), Policy::DropNewest, 2);
    for m in [M(a, 1), M(b, 1), M(a, 2), M(a, 3), M(b, 2)] {
        let _ = inbox.offer(m);
    }
    inbox.lost(Loss::range(Arc::from("t"), b, 3, 9, LossReason::Publisher));
    assert_eq!(inbox.pop(), Some(Incoming::Message(M(a, 1))));
    let _ = inbox.offer(M(b, 10));
    let got: Vec<_> = std::iter::from_fn(|| inbox.pop()).collect();
    check_stream(&got);
    let c = inbox.counters();
    assert_eq!((c.received, c.dropped, c.lost, c.queued), (3, 3, 10, 0));
}

/// A full `Block` inbox pauses its link, which reads on only once it drained to half its
/// depth: a pause and a resume per half queue, not per message.
#[test]
fn a_full_block_inbox_resumes_its_link_at_half_depth() {
    let a = id(1);
    let mut inbox = Inbox::new(Arc::from("t"), Policy::Block { timeout_ms: 0 }, 8);
    for seq in 1..=7 {
        assert!(!inbox.offer(M(a, seq)).full, "message {seq}");
    }
    assert!(inbox.offer(M(a, 8)).full, "the eighth fills it");
    for taken in 1..=4u64 {
        assert!(!inbox.may_resume(), "{taken} taken: still paused");
        assert_eq!(inbox.pop(), Some(Incoming::Message(M(a, taken))));
    }
    assert!(inbox.may_resume(), "four left of eight");
    // A depth of 1 resumes once empty.
    let mut one = Inbox::new(Arc::from("t"), Policy::Block { timeout_ms: 0 }, 1);
    assert!(one.offer(M(a, 1)).full);
    assert!(!one.may_resume());
    assert_eq!(one.pop(), Some(Incoming::Message(M(a, 1))));
    assert!(one.may_resume());
}

/// What a queue is asked, in [`offer_pop_is_an_offer_then_a_pop`].
#[derive(Clone, Debug)]
enum QueueStep {
    /// Publisher `p`'s next message (after `skip` it did not send).
    Offer {
        p: usize,
        skip: u8,
    },
    /// The same, the next item taken at once.
    OfferPop {
        p: usize,
        skip: u8,
    },
    /// Publisher `p`'s next message lost.
    Lost {
        p: usize,
    },
    Pop,
}

fn queue_step() -> impl Strategy<Value = QueueStep> {
    prop_oneof![
        3 => (0..2usize, prop_oneof![4 => Just(0u8), 1 => 1..5u8])
            .prop_map(|(p, skip)| QueueStep::Offer { p, skip }),
        3 => (0..2usize, prop_oneof![4 => Just(0u8), 1 => 1..5u8])
            .prop_map(|(p, skip)| QueueStep::OfferPop { p, skip }),
        1 => (0..2usize).prop_map(|p| QueueStep::Lost { p }),
        2 => Just(QueueStep::Pop),
    ]
}

/// One step of a subscriber's life.
#[derive(Clone, Debug)]
enum Step {
    /// Publisher `p` sends its next message on its link `link` (links are opened in order;
    /// each carries a later part of the publisher's sequence, with holes).
    Send { p: usize, link: usize, skip: u8 },
    /// The application takes one item.
    Pop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..2usize, 0..3usize, prop_oneof![4 => Just(0u8), 1 => 1..5u8])
            .prop_map(|(p, link, skip)| Step::Send { p, link, skip }),
        2 => Just(Step::Pop),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::DropOldest),
        Just(Policy::DropNewest),
        Just(Policy::Block { timeout_ms: 0 }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Two publishers, each over up to three links whose backlogs are read interleaved (the
    /// older link's messages are earlier in the publisher's sequence), through the data plane
    /// and a subscription's queue under any policy: per publisher what the application gets is
    /// increasing, and delivered + lost = the span of seqs it saw.
    #[test]
    fn delivered_plus_lost_is_what_was_published(
        steps in prop::collection::vec(step(), 1..200),
        policy in policy(),
        depth in 1u32..6,
    ) {
        let now = epoch();
        let mut s = subscriber(now);
        let mut views = view("t", &[S]);
        // A second publisher, known to the subscriber's view.
        let q = 3u64;
        let mut nv = views.nodes()[&id(P)].clone();
        nv.info.id = id(q);
        nv.info.name = "n3".into();
        nv.info.pid = cred_of(q).pid;
        views.insert_node(nv);
        s.handle(now, DataInput::Cmd(DataCmd::Routes(Routes::from_view(&views))))
            .expect("routes");
        while s.poll_output().is_some() {}
        let publishers = [id(P), id(q)];
        // Per publisher and link: its peer id, and the seqs it carries, in order.
        let mut links: Vec<Vec<(PeerId, Vec<u64>, usize)>> = vec![Vec::new(), Vec::new()];
        let mut next_peer = 40;
        let mut inbox: Inbox<M> = Inbox::new(Arc::from("t"), policy, depth);
        let mut got = Vec::new();
        for st in steps {
            match st {
                Step::Pop => got.extend(inbox.pop()),
                Step::Send { p, link, skip } => {
                    // Link k carries seqs from k * 1000 + 1 on: what older links still carry
                    // was queued before it opened.
                    while links[p].len() <= link {
                        let peer = PeerId(next_peer);
                        next_peer += 1;
                        let cred = Some(if p == 0 { cred_of(P) } else { cred_of(q) });
                        s.handle(now, DataInput::PeerUp { peer, cred }).expect("up");
                        feed_s(&mut s, now, peer, &hello(publishers[p]), &[]);
                        links[p].push((peer, Vec::new(), 0));
                    }
                    let l = &mut links[p][link];
                    let seq = l.1.last().map_or(link as u64 * 1000 + 1, |s| s + 1)
                        + u64::from(skip);
                    l.1.push(seq);
                    let peer = l.0;
                    for o in feed_s(&mut s, now, peer, &[msg(seq)], &[]) {
                        match o {
                            DataOutput::Deliver(d) => {
                                let off = inbox.offer(M(d.publisher, d.seq));
                                if let Some(p) = off.dropped {
                                    s.handle(now, DataInput::Cmd(DataCmd::QueueDropped {
                                        topic: Arc::from("t"), publisher: p, count: 1,
                                    })).expect("valid");
                                }
                            }
                            DataOutput::Lost(l) => inbox.lost(l),
                            DataOutput::Evt(DataEvt::PeerMisbehaved { reason, .. }) => {
                                panic!("{reason}")
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        got.extend(std::iter::from_fn(|| inbox.pop()));
        let seen = check_stream(&got);
        // `status` tells the same: per publisher, delivered by the data plane = what the
        // application got + what its queue dropped; missed + dropped = what it was told lost.
        let stats = s.stats().received;
        for (p, (_, _, delivered, lost)) in seen {
            let st = stats.iter().find(|t| t.peer == Some(p)).expect("counted");
            prop_assert_eq!(st.messages, delivered + st.dropped);
            prop_assert_eq!(st.missed + st.dropped, lost);
        }
    }

    /// `Inbox::offer_pop`, which hands a message on without queueing it when nothing is
    /// queued, tells and counts what `offer` followed by `pop` (unless the offer filled a
    /// `Block` queue) does, under any policy and depth, whatever is queued.
    #[test]
    fn offer_pop_is_an_offer_then_a_pop(
        steps in prop::collection::vec(queue_step(), 1..100),
        policy in policy(),
        depth in 1u32..4,
    ) {
        let publishers = [id(1), id(2)];
        let mut next = [1u64, 1];
        let mut fast: Inbox<M> = Inbox::new(Arc::from("t"), policy, depth);
        let mut slow: Inbox<M> = Inbox::new(Arc::from("t"), policy, depth);
        for st in steps {
            match st {
                QueueStep::Offer { p, skip } | QueueStep::OfferPop { p, skip } => {
                    let seq = next[p] + u64::from(skip);
                    next[p] = seq + 1;
                    let m = || M(publishers[p], seq);
                    if matches!(st, QueueStep::Offer { .. }) {
                        prop_assert_eq!(fast.offer(m()), slow.offer(m()));
                    } else {
                        let offered = slow.offer(m());
                        let item = if offered.full { None } else { slow.pop() };
                        prop_assert_eq!(fast.offer_pop(m()), (offered, item));
                    }
                }
                QueueStep::Lost { p } => {
                    let loss = Loss::single(Arc::from("t"), publishers[p], next[p], LossReason::Publisher);
                    next[p] += 1;
                    fast.lost(loss.clone());
                    slow.lost(loss);
                }
                QueueStep::Pop => prop_assert_eq!(fast.pop(), slow.pop()),
            }
            prop_assert_eq!(fast.counters(), slow.counters());
            prop_assert_eq!(fast.is_empty(), slow.is_empty());
        }
        let rest = |i: &mut Inbox<M>| std::iter::from_fn(|| i.pop()).collect::<Vec<_>>();
        prop_assert_eq!(rest(&mut fast), rest(&mut slow));
    }
}
