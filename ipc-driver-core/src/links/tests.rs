//! Unit tests of the link table.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use ipc_os::socket::{self, Recv};
use ipc_proto::data::DirectSend;
use ipc_proto::wire::MessageHeader;
use ipc_proto::{Member, NodeId, NodeOptions};

use super::*;

/// A table over a fresh group directory, and a member for it to feed.
fn table(name: &str, max_outbox: usize) -> (Links<OwnedFd>, Member, PathBuf) {
    table_of(name, max_outbox)
}

/// [`table`], for attachments of type `A`.
fn table_of<A>(name: &str, max_outbox: usize) -> (Links<A>, Member, PathBuf) {
    let base = std::env::temp_dir().join(format!("ipc-core-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("temp dir");
    let dir = GroupDir::open("links", Some(&base), true).expect("group dir");
    let links = Links::new(
        Poller::new().expect("epoll"),
        dir,
        None,
        max_outbox,
        1024,
        1024,
    )
    .expect("table");
    let options = NodeOptions::new(name, ipc_os::current_credentials().uid);
    let id = NodeId::new(3).expect("non-zero");
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let member = Member::new(options.member_config(id, None, 1), Instant::now());
    (links, member, base)
}

/// A link of the table to peer 9 (a data link if `data`) over a fresh socket pair: the
/// peer's id and its end.
fn linked<A>(links: &mut Links<A>, data: bool) -> (PeerId, OwnedFd) {
    let (ours, theirs) = socket::socketpair_seqpacket().expect("pair");
    let peer = PeerId(9);
    links.add_link(ours, data, false, peer).expect("watched");
    (peer, theirs)
}

#[test]
fn tokens_tell_listeners_from_links() {
    assert_eq!(Ready::of(OWN_TOKEN), Ready::Own);
    assert_eq!(Ready::of(HUB_LISTENER), Ready::Listener(Listener::Hub));
    assert_eq!(Ready::of(DATA_LISTENER), Ready::Listener(Listener::Data));
    assert_eq!(Ready::of(Token(7)), Ready::Link(7));
}

#[test]
fn transmit_sends_and_a_closed_peer_is_read_to_the_end() {
    let (mut links, mut member, base) = table("transmit", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (peer, theirs) = linked(&mut links, false);
    links.transmit(&mut member, &Owned, now, peer, b"hello".to_vec(), None);
    let mut buf = [0; 16];
    let got = socket::recv_record(theirs.as_fd(), &mut buf, &mut Vec::new(), 0);
    assert!(matches!(got, Ok(Recv::Data { len: 5, .. })), "{got:?}");
    assert_eq!(&buf[..5], b"hello");

    // The peer sends a last record and closes: the failed send keeps the link, and what
    // it sent is still read, up to the end of the stream.
    let sent = socket::send_record(theirs.as_fd(), b"bye", &[]).expect("sent");
    assert!(matches!(sent, Sent::Complete));
    drop(theirs);
    links.transmit(&mut member, &Owned, now, peer, b"late".to_vec(), None);
    assert!(links.peers.contains_key(&peer), "kept for reading");
    assert_eq!(
        links.read_record(&mut member, now, 0, Reading::All),
        Read::Record
    );
    assert_eq!(
        links.read_record(&mut member, now, 0, Reading::All),
        Read::Done
    );
    assert!(links.peers.is_empty(), "the end of the stream closes it");
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn a_topology_link_over_its_outbox_bound_is_closed() {
    let (mut links, mut member, base) = table("bound", 4);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (peer, _theirs) = linked(&mut links, false);
    links.transmit(&mut member, &Owned, now, peer, vec![0; 5], None);
    assert!(links.peers.is_empty(), "closed");
    assert!(links.is_flushed());
    let _ = std::fs::remove_dir_all(base);
}

/// Attachments as the calloop driver has them: ids looked up in a table the driver closes
/// segments from when the data plane releases them.
struct Ids(HashMap<u64, OwnedFd>);

impl Attachments<u64> for Ids {
    fn fd<'a>(&'a self, id: &'a u64) -> Option<BorrowedFd<'a>> {
        self.0.get(id).map(AsFd::as_fd)
    }
}

#[test]
fn a_record_that_waits_holds_its_fd_after_the_driver_closes_it() {
    let (mut links, mut member, base) = table_of::<u64>("held", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (peer, theirs) = linked(&mut links, true);
    let segment = memfd::Segment::create("held", 8192).expect("memfd");
    segment.seal(SealSet::FRESH).expect("sealed");
    let mut ids = Ids(HashMap::from([(1, segment.into_fd())]));
    // Fill the socket, so that the next record waits in the outbox.
    let filler = vec![7; 32 << 10];
    for _ in 0..1000 {
        if !links.links[0].outbox.is_empty() {
            break;
        }
        links.transmit(&mut member, &ids, now, peer, filler.clone(), None);
    }
    assert!(!links.links[0].outbox.is_empty(), "the socket filled up");
    links.transmit(&mut member, &ids, now, peer, b"segment".to_vec(), Some(1));
    // The data plane released the segment once it handed the record over: the driver closed
    // it, while the record still waits.
    ids.0.clear();

    let mut buf = vec![0; 64 << 10];
    let mut got = Vec::new();
    loop {
        links.flush(&mut member, &ids, now, 0);
        let mut fds = Vec::new();
        match socket::recv_record(theirs.as_fd(), &mut buf, &mut fds, 1).expect("recv") {
            Recv::Data { len, .. } => {
                if &buf[..len] == b"segment" {
                    got = fds;
                    break;
                }
            }
            Recv::WouldBlock if links.links[0].outbox.is_empty() => break,
            Recv::WouldBlock => {}
            Recv::Closed => panic!("closed"),
        }
    }
    let [fd] = <[OwnedFd; 1]>::try_from(got).expect("the record came with its fd");
    let v = memfd::verify(fd, SealSet::FRESH, 0, 0).expect("the segment");
    assert_eq!(v.size(), 8192);
    let _ = std::fs::remove_dir_all(base);
}

/// The environment variable that makes [`peer_process`] connect to the test.
const PEER_ENV: &str = "IPC_CORE_TEST_PEER";

/// Not a test: the process [`spawn_peer`] starts. It connects to the address it is given
/// and waits until its stdin closes or it is killed.
#[test]
#[ignore = "a peer process for the pidfd tests, started by them"]
fn peer_process() {
    let Some(name) = std::env::var_os(PEER_ENV) else {
        return;
    };
    let addr = ipc_os::addr::AbstractAddr::new(name.as_encoded_bytes()).expect("address");
    let _socket = socket::connect(addr.as_unix_addr()).expect("connect to the test");
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0]);
}

/// A process connected to this one: killed and reaped however the test ends.
struct Peer(std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a [`peer_process`] and returns it with this end of its connection.
fn spawn_peer(tag: &str) -> (Peer, OwnedFd) {
    use std::process::{Command, Stdio};
    let name = format!("ipc-core-{tag}-{}", std::process::id());
    let addr = ipc_os::addr::AbstractAddr::new(name.as_bytes()).expect("address");
    let listener = socket::listen(addr.as_unix_addr()).expect("listen");
    let peer = Peer(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "links::tests::peer_process",
                "--ignored",
                "--quiet",
            ])
            .env(PEER_ENV, &name)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the peer process"),
    );
    let poller = Poller::new().expect("epoll");
    poller
        .add(&listener, Token(0), Interest::READABLE)
        .expect("watch the listener");
    let mut events = ipc_os::poll::Events::with_capacity(1);
    for _ in 0..100 {
        if let Some((fd, _)) = socket::accept(&listener).expect("accept") {
            return (peer, fd);
        }
        poller
            .wait(&mut events, Some(Duration::from_millis(100)))
            .expect("wait");
    }
    panic!("the peer process did not connect within 10 s");
}

/// Watches the process at the other end of `fd` as the link to `peer`; returns its key.
fn watch_link(
    links: &mut Links<OwnedFd>,
    member: &mut Member,
    now: Instant,
    peer: PeerId,
    fd: OwnedFd,
) -> usize {
    let process = PidFd::open_peer(&fd);
    if !matches!(process, PeerProcess::Watch(_)) {
        panic!("no pidfd for a live peer process: {process:?}");
    }
    links.add_link(fd, false, false, peer).expect("link");
    links.watch(member, now, peer, process);
    links.watched[&peer]
}

#[test]
fn a_watched_process_that_exits_is_reported_once() {
    if ipc_os::pidfd::pidfds_disabled() {
        return;
    }
    let (mut links, mut member, base) = table("exit", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (mut child, fd) = spawn_peer("exit");
    let peer = PeerId(9);
    let key = watch_link(&mut links, &mut member, now, peer, fd);
    let mut events = ipc_os::poll::Events::with_capacity(4);
    links
        .poller()
        .wait(&mut events, Some(Duration::ZERO))
        .expect("wait");
    assert!(
        events
            .iter()
            .all(|e| Ready::of(e.token()) != Ready::Exited(key)),
        "alive: not reported"
    );
    child.0.kill().expect("SIGKILL");
    // The link's socket hangs up first and stays readable: wait on the clock, not on
    // wakeups.
    #[allow(clippy::disallowed_methods)] // a test's deadline
    let until = Instant::now() + Duration::from_secs(10);
    #[allow(clippy::disallowed_methods)] // a test's deadline
    let exited = std::iter::from_fn(|| (Instant::now() < until).then_some(())).any(|()| {
        links
            .poller()
            .wait(&mut events, Some(Duration::from_millis(100)))
            .expect("wait");
        events
            .iter()
            .any(|e| Ready::of(e.token()) == Ready::Exited(key))
    });
    assert!(exited, "the exit is seen within 10 s");
    links.exited(&mut member, now, key);
    assert!(
        links.watches.is_empty() && links.watched.is_empty(),
        "the watch ended"
    );
    links.exited(&mut member, now, key); // a second report of the same key does nothing
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn a_closed_link_stays_watched_for_a_second_then_its_pidfd_is_closed() {
    if ipc_os::pidfd::pidfds_disabled() {
        return;
    }
    let (mut links, mut member, base) = table("expiry", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (_child, fd) = spawn_peer("expiry");
    let peer = PeerId(9);
    let _ = watch_link(&mut links, &mut member, now, peer, fd);
    let link = links.peers[&peer];
    links.remove(now, link);
    links.handle_timeout(now + EXIT_WATCH_AFTER_CLOSE - Duration::from_millis(1));
    assert_eq!(links.watches.len(), 1, "still watched just before");
    links.handle_timeout(now + EXIT_WATCH_AFTER_CLOSE);
    assert!(
        links.watches.is_empty() && links.watched.is_empty(),
        "the pidfd is closed"
    );
    assert_eq!(links.poll_timeout(), None, "no timer left behind");
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn this_process_is_never_watched() {
    let (mut links, mut member, base) = table("own", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (ours, _theirs) = socket::socketpair_seqpacket().expect("pair");
    let process = PidFd::open_peer(&ours);
    links.watch(&mut member, now, PeerId(9), process);
    assert!(links.watches.is_empty(), "a hub's own spoke is not watched");
    let _ = std::fs::remove_dir_all(base);
}

/// Whether the table's set reports anything now.
fn set_ready(links: &Links<OwnedFd>) -> bool {
    let mut events = ipc_os::poll::Events::with_capacity(8);
    links
        .poller
        .wait(&mut events, Some(std::time::Duration::ZERO))
        .expect("wait")
        > 0
}

#[test]
fn a_resumed_link_is_registered_again_only_once_its_reader_drains_it() {
    let (mut links, mut member, base) = table("resume", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let (peer, theirs) = linked(&mut links, true);
    let send = |record: &[u8]| {
        let sent = socket::send_record(theirs.as_fd(), record, &[]).expect("sent");
        assert!(matches!(sent, Sent::Complete));
    };
    for _ in 0..6 {
        send(b"rec");
    }
    // Paused (a full queue), the link stays registered until it reports readiness; read
    // then, it settles: out of the set.
    links.set_paused(peer, true);
    assert!(links.links[0].registered.is_readable(), "a pause is lazy");
    assert!(set_ready(&links), "records wait");
    assert_eq!(
        links.read_record(&mut member, now, 0, Reading::All),
        Read::Done
    );
    assert_eq!(links.links[0].registered, Interest::NONE);
    assert!(!set_ready(&links), "settled");

    // A reader resumes it and reads; its queue fills again: nothing was registered in
    // between, so nothing woke the set's waiter for the records still waiting.
    assert_eq!(links.resume_reading(peer), Some(0));
    assert_eq!(
        links.links[0].registered,
        Interest::NONE,
        "not before the read"
    );
    for _ in 0..2 {
        assert_eq!(
            links.read_record(&mut member, now, 0, Reading::All),
            Read::Record
        );
    }
    links.set_paused(peer, true);
    assert!(
        !links.read_on(0, Read::Record, Reading::All),
        "paused again"
    );
    assert_eq!(links.links[0].registered, Interest::NONE);
    assert!(!set_ready(&links), "records wait, and wake nobody");

    // Stopped on its budget, the reader leaves it registered: the records still waiting
    // make the set ready for the driver's loop.
    assert_eq!(links.resume_reading(peer), Some(0));
    assert_eq!(
        links.read_record(&mut member, now, 0, Reading::All),
        Read::Record
    );
    links.budget_spent(0);
    assert!(links.links[0].registered.is_readable(), "budget spent");
    assert!(set_ready(&links), "the rest wakes the driver's loop");

    // Drained by its reader, the link waits in the set again: the next record wakes it.
    links.set_paused(peer, true);
    assert_eq!(
        links.read_record(&mut member, now, 0, Reading::All),
        Read::Done
    );
    assert_eq!(links.resume_reading(peer), Some(0));
    let mut read = 0;
    while links.read_record(&mut member, now, 0, Reading::All) == Read::Record {
        read += 1;
    }
    assert_eq!(read, 3, "the last three records");
    assert!(
        links.links[0].registered.is_readable(),
        "drained: registered"
    );
    assert!(!set_ready(&links), "nothing waits");
    send(b"next");
    assert!(set_ready(&links), "the next record is seen");
    let _ = std::fs::remove_dir_all(base);
}

/// A publish's inline message goes straight into a link's ring only where nothing waits to
/// go before it and no send must take returns first (`DirectSend for Links`): refused for an
/// unknown link, a link without a ring, a record in the outbox, a closing or failed link,
/// ranges out while returns are deferred, and a payload above the ring's inline size. What
/// it takes reaches the subscriber's end of the ring.
#[test]
fn a_direct_send_takes_a_message_only_where_nothing_must_go_first() {
    let (mut links, mut member, base) = table("direct", 1 << 20);
    #[allow(clippy::disallowed_methods)] // a test reads the clock once
    let now = Instant::now();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        MessageHeader { topic: 1, seq }
    };
    assert!(!links.send_inline(PeerId(77), next(), b"m"), "no such link");
    let (peer, _theirs) = linked(&mut links, true);
    assert!(!links.send_inline(peer, next(), b"m"), "no ring");
    let (mut rx, tx) = crate::ring::test_pair();
    let key = links.peers[&peer];
    links.links[key].ring = Some(tx);

    let sent = next();
    assert!(
        links.send_inline(peer, sent, b"first"),
        "a ring, nothing ahead"
    );
    match rx.next(&mut member) {
        Ok(Found::Message(header, mut payload)) => {
            assert_eq!(header, sent);
            assert_eq!(payload.as_mut(), b"first");
        }
        other => panic!("not in the ring: {other:?}"),
    }

    links.links[key]
        .outbox
        .push_back((b"a record".to_vec(), None));
    assert!(!links.send_inline(peer, next(), b"m"), "a record waits");
    links.links[key].outbox.clear();

    links.links[key].lent.set(1);
    links.defer_return_wakes(true);
    assert!(!links.send_inline(peer, next(), b"m"), "returns deferred");
    links.defer_return_wakes(false);
    assert!(links.send_inline(peer, next(), b"m"), "returns asked for");

    links.links[key].closing = Some(now);
    assert!(!links.send_inline(peer, next(), b"m"), "closing");
    links.links[key].closing = None;
    links.links[key].write_failed = true;
    assert!(!links.send_inline(peer, next(), b"m"), "failed");
    links.links[key].write_failed = false;

    let max = usize::try_from(ipc_proto::ring::link::LINK_INLINE_MAX).expect("small");
    assert!(
        !links.send_inline(peer, next(), &vec![0; max + 1]),
        "too large"
    );
    assert!(
        links.send_inline(peer, next(), &vec![0; max]),
        "the largest"
    );
    let _ = std::fs::remove_dir_all(base);
}
