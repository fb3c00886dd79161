//! The [`doc_bytes`] target.

use std::time::Instant;

use crate::ids::{NodeId, PeerId};

/// The `doc_bytes` target: `data` cut into document messages (each a length byte, then that
/// many bytes), fed both as a replica's messages to a serving [`DocHost`](crate::doc::DocHost)
/// and as a host's messages to a [`DocReplica`](crate::doc::DocReplica) with a document open
/// and a patch pending. Neither panics, whatever the bytes; and a message that decodes
/// re-encodes to bytes that decode to the same message.
pub fn doc_bytes(data: &[u8], now: Instant) {
    use crate::doc::{
        DocHost, DocLimits, DocReplica, HostConfig, HostInput, ReplicaConfig, ReplicaInput,
    };
    use crate::wire::{decode_doc, encode_doc};
    let limits = DocLimits::default();
    let node = NodeId::new(7).expect("non-zero");
    let mut host = DocHost::new(HostConfig::default(), now);
    let _ = host.handle(now, HostInput::Settled);
    let mut replica = DocReplica::new(ReplicaConfig::new(node), now);
    let _ = replica.handle(now, ReplicaInput::HubUp);
    let _ = replica.open(now, "d", serde_json::json!({"n": 0, "a": [1, 2]}));
    let _ = replica.patch(now, "d", &serde_json::json!({"$inc": {"n": 1}}), 0);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (msg, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        if let Ok(m) = decode_doc(msg, &limits) {
            let again = decode_doc(&encode_doc(&m), &limits);
            assert_eq!(
                again.as_ref(),
                Ok(&m),
                "a decoded message re-encodes to itself"
            );
        }
        let input = HostInput::Bytes {
            peer: PeerId(1),
            node,
            data: msg,
        };
        let _ = host.handle(now, input);
        let _ = replica.handle(now, ReplicaInput::Bytes(msg));
        while host.poll_output().is_some() {}
        while replica.poll_output().is_some() {}
    }
}
