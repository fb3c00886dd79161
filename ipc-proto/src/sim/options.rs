//! [`SpawnOptions`]: what an application chooses for one node of a simulation.

/// How [`Sim::spawn_with`] starts a node: what its application chooses for it, as the
/// drivers' node options do. The default is what [`Sim::spawn`] starts: a document witness
/// that may run the hub.
///
/// [`Sim::spawn_with`]: super::Sim::spawn_with
/// [`Sim::spawn`]: super::Sim::spawn
#[derive(Clone, Debug)]
#[must_use]
pub struct SpawnOptions {
    pub(crate) witness: bool,
    pub(crate) hub_eligible: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        Self {
            witness: true,
            hub_eligible: true,
        }
    }
}

impl SpawnOptions {
    /// Whether the node keeps a copy of every document of the group
    /// ([`MemberConfig::witness`](crate::MemberConfig::witness)). Default yes; a one-shot
    /// writer, such as the command line's `doc patch`, says no.
    pub fn witness(mut self, witness: bool) -> Self {
        self.witness = witness;
        self
    }

    /// Whether the node may run the group's hub
    /// ([`SpokeConfig::hub_eligible`](crate::SpokeConfig::hub_eligible)). Default yes.
    pub fn hub_eligible(mut self, eligible: bool) -> Self {
        self.hub_eligible = eligible;
        self
    }
}
