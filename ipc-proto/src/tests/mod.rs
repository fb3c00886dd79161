//! Deterministic simulation of whole groups: named scenarios and properties over random fault
//! schedules.

mod properties;
mod scenarios;
pub(crate) mod sim;
