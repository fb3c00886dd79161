//! Deterministic simulation of whole groups: named scenarios and properties over random fault
//! schedules.

mod docs;
mod properties;
mod regressions;
mod scenarios;
pub(crate) mod sim;
