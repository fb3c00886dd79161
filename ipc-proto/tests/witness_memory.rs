//! What a witness's copies cost: a replica that never opens a document holds 100 documents of
//! 64 KiB of JSON each; the heap it keeps for them is measured with a counting allocator and
//! printed against the values' size. The bound is 2x; this test prints the figure and
//! fails above it (a memory figure on one allocator, not a timing: it does not depend on the
//! machine's load).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use ipc_proto::NodeId;
use ipc_proto::PeerId;
use ipc_proto::doc::{
    DocHost, DocReplica, HostConfig, HostInput, HostOutput, ReplicaConfig, ReplicaInput,
    ReplicaOutput,
};
use ipc_proto::wire::encode_doc;
use serde_json::{Value, json};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const DOCS: usize = 100;
const SIZE: usize = 64 * 1024;

/// About `SIZE` bytes of JSON shaped like application state: an object of records, each a few
/// fields of numbers, strings and a small array.
fn value(seed: usize) -> Value {
    let mut items = serde_json::Map::new();
    // `{"items":{` and `}}`, then `"key":value,` per item.
    let mut len = 13;
    for i in 0.. {
        let v = json!({"id": i, "name": format!("motor-{seed}-{i}"), "speed": (i * 7) % 100,
                       "on": i % 2 == 0, "limits": [i % 10, i % 100]});
        let key = format!("item{i:05}");
        len += key.len() + 4 + serde_json::to_string(&v).expect("json").len();
        items.insert(key, v);
        if len >= SIZE {
            break;
        }
    }
    json!({ "items": items })
}

#[test]
fn a_witness_of_100_documents_of_64_kib_keeps_at_most_twice_their_size() {
    #[allow(clippy::disallowed_methods)] // the test's epoch; the machines never read a clock
    let now = Instant::now();
    let writer = NodeId::new(1).expect("non-zero");
    let witness = NodeId::new(2).expect("non-zero");
    let mut host = DocHost::new(HostConfig::default(), now);
    host.handle(now, HostInput::Settled).expect("never Err");
    let mut w = DocReplica::new(ReplicaConfig::new(writer), now);
    w.handle(now, ReplicaInput::HubUp).expect("never Err");
    let mut values_len = 0;
    for d in 0..DOCS {
        let v = value(d);
        values_len += serde_json::to_string(&v).expect("json").len();
        w.open(now, &format!("doc{d}"), v).expect("open");
    }
    let pump = |host: &mut DocHost, r: &mut DocReplica, peer: PeerId, node: NodeId| {
        while let Some(out) = r.poll_output() {
            if let ReplicaOutput::Send(msg) = out {
                let data = encode_doc(&msg);
                host.handle(
                    now,
                    HostInput::Bytes {
                        peer,
                        node,
                        data: &data,
                    },
                )
                .expect("never Err");
            }
        }
    };
    pump(&mut host, &mut w, PeerId(1), writer);
    // The host's answers to the writer: not this test's concern.
    while host.poll_output().is_some() {}

    // The witness joins: its opening, then every document's state from the host, encoded.
    let mut r = DocReplica::new(ReplicaConfig::new(witness), now);
    r.handle(now, ReplicaInput::HubUp).expect("never Err");
    pump(&mut host, &mut r, PeerId(2), witness);
    let mut to_witness = Vec::new();
    while let Some(out) = host.poll_output() {
        if let HostOutput::Send {
            peer: PeerId(2),
            msg,
        } = out
        {
            to_witness.push(encode_doc(&msg));
        }
    }
    let before = LIVE.load(Ordering::Relaxed);
    for m in &to_witness {
        r.handle(now, ReplicaInput::Bytes(m)).expect("never Err");
        while r.poll_output().is_some() {}
    }
    let kept = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(r.witnessed().count(), DOCS, "every document witnessed");
    let ratio = kept as f64 / values_len as f64;
    println!(
        "witness of {DOCS} documents, {values_len} bytes of JSON: keeps {kept} bytes, {ratio:.2}x"
    );
    assert!(
        ratio <= 2.0,
        "a witness keeps {ratio:.2}x its documents' size"
    );
}
