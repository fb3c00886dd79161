//! [`Packed`]: a witness's copy of a document it has not opened, kept close to its size as
//! JSON text.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::state::DocState;
use super::super::types::DocLimits;
use super::super::update::Update;
use crate::ids::NodeId;
use crate::wire::doc::{decode_body, encode_body};

/// A witness's copy of a document it has not opened, kept close to its size as JSON text: a
/// parsed value takes several times that. It is the state as encoded on the wire (the value as
/// JSON text, marks and log) at `body_version`, and the patches accepted since as JSON text,
/// folded into the body once they take half its size.
#[derive(Debug)]
pub(super) struct Packed {
    pub(super) version: u64,
    pub(super) body_version: u64,
    pub(super) body: Vec<u8>,
    pub(super) patches: Vec<PackedPatch>,
    pub(super) patch_bytes: usize,
}

#[derive(Debug)]
pub(super) struct PackedPatch {
    origin: NodeId,
    seq: u64,
    wall_ms: u64,
    /// The update as canonical JSON text.
    update: String,
}

impl Packed {
    pub(super) fn new(version: u64, mut body: Vec<u8>) -> Self {
        body.shrink_to_fit();
        Self {
            version,
            body_version: version,
            body,
            patches: Vec::new(),
            patch_bytes: 0,
        }
    }

    pub(super) fn from_state(state: &DocState) -> Self {
        Self::new(
            state.version,
            encode_body(&state.marks, &state.log, &state.value),
        )
    }

    /// What it takes, about: the body and the patches' text.
    pub(super) fn bytes(&self) -> usize {
        self.body.len() + self.patch_bytes
    }

    /// Records the patch that made `version` (the next one).
    pub(super) fn push(
        &mut self,
        version: u64,
        origin: NodeId,
        seq: u64,
        wall_ms: u64,
        update: &Update,
        limits: &DocLimits,
    ) -> Result<(), String> {
        let update =
            serde_json::to_string(&update.to_value()).expect("a JSON value always serializes");
        self.patch_bytes += update.len() + std::mem::size_of::<PackedPatch>();
        self.patches.push(PackedPatch {
            origin,
            seq,
            wall_ms,
            update,
        });
        self.version = version;
        if self.patch_bytes > self.body.len() / 2 {
            self.compact(limits)?;
        }
        Ok(())
    }

    /// The state at `version`: the body with the patches applied.
    pub(super) fn state(&self, limits: &DocLimits) -> Result<DocState, String> {
        let mut state = decode_body(&self.body, Some(self.body_version), limits)
            .map_err(|e| format!("the packed state does not decode: {e}"))?;
        for p in &self.patches {
            let update = serde_json::from_str::<Value>(&p.update)
                .map_err(|e| e.to_string())
                .and_then(|v| Update::parse(&v).map_err(|e| e.to_string()))
                .map_err(|e| format!("a packed patch does not parse: {e}"))?;
            state
                .advance(
                    p.origin,
                    p.seq,
                    p.wall_ms,
                    &update,
                    limits,
                    &BTreeMap::new(),
                )
                .map_err(|e| format!("a packed patch does not apply: {e}"))?;
        }
        Ok(state)
    }

    /// Folds the patches into the body.
    pub(super) fn compact(&mut self, limits: &DocLimits) -> Result<(), String> {
        if !self.patches.is_empty() {
            *self = Self::from_state(&self.state(limits)?);
        }
        Ok(())
    }
}
