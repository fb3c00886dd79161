//! Properties a user of `ipc_proto::sim` writes (`PROPTEST_CASES` sets how many cases).
use std::time::Duration;

use ipc_proto::sim::{Sim, check, strategy};
use proptest::prelude::*;

proptest! {
    // Crash the hub of four at a random time: the three survivors converge.
    #[cfg_attr(test, test)] // (a test here, a plain function in the docs' example)
    fn survivors_of_a_hub_crash_converge(seed: u64, after_ms in 0u64..3_000) {
        let mut sim = Sim::builder(seed).members(4).build();
        sim.settle(100_000).map_err(TestCaseError::fail)?;
        sim.run_for(Duration::from_millis(after_ms));
        let hub = sim.hubs().next().expect("settled: one hub");
        sim.crash(hub);
        sim.settle(100_000).map_err(TestCaseError::fail)?;
        prop_assert_eq!(sim.members().count(), 3);
        check::all(&sim).map_err(|v| TestCaseError::fail(format!("seed {seed}: {v}")))?;
    }

    // Crashes, stalls past the keepalive, join storms, leaves, link losses and hub races
    // among four to six members: the group converges and every check holds.
    #[cfg_attr(test, test)]
    fn groups_converge_after_any_schedule(s in strategy::schedules(4..=6, 8)) {
        s.run().map_err(|f| TestCaseError::fail(f.to_string()))?;
    }
}
