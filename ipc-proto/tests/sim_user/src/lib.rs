//! Nothing: this crate is its test, `tests/survivors.rs`, written against `ipc_proto::sim`
//! from outside the workspace.
