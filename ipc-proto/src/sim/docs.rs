//! The documents of a [`Sim`]: applications open and patch them; every patch a host
//! broadcasts is recorded as the ground truth the [`check`](super::check)s replay.

use serde_json::Value;

use super::app::NodeIx;
use super::group::{Broadcast, Sim};
use crate::Limits;
use crate::doc::{DocError, DocLimits, PatchId, Update};
use crate::wire::{DocMsg, Frame, decode, decode_doc};

impl Sim {
    /// Opens a document on a node, as its application would.
    pub fn open_doc(&mut self, ix: NodeIx, name: &str, default: Value) {
        let _span = self.span(ix).entered();
        let now = self.now();
        let n = &mut self.nodes[ix.0];
        if !n.is_member() || n.frozen {
            return;
        }
        n.member
            .open_doc(now, name, default)
            .expect("valid opening");
        self.drain(ix);
    }

    /// Patches a document on a node, as its application would (`None`: the node is not
    /// running). The wall clock is the simulated time.
    pub fn patch_doc(
        &mut self,
        ix: NodeIx,
        name: &str,
        update: &Value,
    ) -> Option<Result<PatchId, DocError>> {
        let _span = self.span(ix).entered();
        let now = self.now();
        let wall_ms = self.elapsed().as_millis() as u64;
        let n = &mut self.nodes[ix.0];
        if !n.is_member() || n.frozen {
            return None;
        }
        let r = n.member.patch_doc(now, name, update, wall_ms);
        if let Ok(id) = &r {
            n.patches.push((name.to_owned(), *id));
            let update = Update::parse(update).expect("the replica took it, so it parses");
            n.updates.insert(*id, update);
        }
        self.drain(ix);
        Some(r)
    }

    /// Counts a document message a node sent, and records a host's broadcast of an accepted
    /// patch.
    pub(crate) fn record_doc(&mut self, bytes: &[u8]) {
        let Some(body) = bytes.get(4..) else {
            return;
        };
        let Ok(Frame::Doc(data)) = decode(body, &Limits::default()) else {
            return;
        };
        let Ok(msg) = decode_doc(&data, &DocLimits::default()) else {
            return;
        };
        *self.doc_msgs.entry(msg.name()).or_default() += 1;
        if let DocMsg::Patched {
            name,
            version,
            origin,
            wall_ms,
            update,
            ..
        } = msg
        {
            let b = Broadcast {
                origin,
                wall_ms,
                update,
            };
            self.doc_history.insert((name, version), b);
        }
    }
}
