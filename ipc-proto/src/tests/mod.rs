//! Deterministic simulation of whole groups: named scenarios and properties over random fault
//! schedules.

mod admission;
mod checks;
mod data;
mod deaths;
mod doc_deaths;
mod docs;
mod properties;
mod regressions;
mod scenarios;

/// Runs `cases` random seeds through `run` with proptest's runner, shard `shard` of several
/// (its seeds are xored with the shard's number, so shards differ); a failing seed is saved
/// under `proptest-regressions/` next to `source_file` (pass `file!()`) and replayed first by
/// later runs. Panics with the seed and the error of the first failure; returns every outcome.
pub(crate) fn run_seeds<O, E: std::fmt::Display>(
    source_file: &'static str,
    cases: u32,
    shard: u32,
    run: impl Fn(u64) -> Result<O, E>,
) -> Vec<O> {
    use proptest::prelude::*;
    use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

    let outcomes = std::cell::RefCell::new(Vec::new());
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &any::<u64>().prop_map(move |s| s ^ u64::from(shard)),
        |seed| match run(seed) {
            Ok(o) => {
                outcomes.borrow_mut().push(o);
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(format!("seed {seed}: {e}"))),
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    outcomes.into_inner()
}

/// The seed a `replay_seed` test replays: environment variable `var`, else `default`; with
/// `RUST_LOG` set, the machines' logs go to the test's output.
pub(crate) fn seed_to_replay(var: &str, default: u64) -> u64 {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
