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
mod witness;

/// A property's random schedules: `default` per `cargo test` run (environment variable
/// `var` overrides it), split over `shards` test functions so that the harness runs them in
/// parallel. Declare the test functions with [`shard_tests!`], and run each with
/// [`Shards::run`].
pub(crate) struct Shards {
    /// The environment variable that sets how many schedules run.
    pub(crate) var: &'static str,
    /// How many schedules run by default.
    pub(crate) default: u32,
    /// How many test functions share them.
    pub(crate) shards: u32,
}

impl Shards {
    /// How many schedules run in all.
    pub(crate) fn total(&self) -> u32 {
        std::env::var(self.var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.default)
    }

    /// Runs shard `shard`'s share of the schedules through `run` ([`run_seeds`]; pass
    /// `file!()` as `source_file`); returns what they measured.
    pub(crate) fn run<O, E: std::fmt::Display>(
        &self,
        source_file: &'static str,
        shard: u32,
        run: impl Fn(u64) -> Result<O, E>,
    ) -> Vec<O> {
        assert!(shard < self.shards, "shard {shard} of {}", self.shards);
        run_seeds(source_file, self.total().div_ceil(self.shards), shard, run)
    }
}

/// Declares one `#[test]` function per shard of a [`Shards`] constant, each calling
/// `$run(shard)`: `shard_tests!(SHARDS, run_shard; shard_0 = 0, shard_1 = 1);`. Fails to
/// compile unless the functions are as many as the constant's shards.
macro_rules! shard_tests {
    ($shards:expr, $run:expr; $($name:ident = $shard:literal),+ $(,)?) => {
        const _: () = assert!([$($shard),+].len() as u32 == $shards.shards, "one test per shard");
        $(
            #[test]
            fn $name() {
                $run($shard)
            }
        )+
    };
}
pub(crate) use shard_tests;

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
