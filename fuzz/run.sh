#!/usr/bin/env bash
# Runs every fuzz target for a bounded time; exits non-zero if any of them crashes.
#
#   fuzz/run.sh [seconds per target] [target...]      (default 20 s, every target)
#
# Targets (`cargo fuzz list`): decode, hub_ops, spoke_ops (topology), data_decode, data_ops
# (data plane), doc_bytes (shared documents), ring_consume (the data plane's shared-memory ring),
# ring_link (both ends of a data link's ring beside its socket, as the drivers use them).
#
# Installs cargo-fuzz if it is missing. cargo-fuzz needs nightly compiler flags; the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1. Each target starts from its committed seeds
# (fuzz/corpus/<target>/, left untouched) and keeps what it finds in a scratch directory. A
# crash leaves its input in fuzz/artifacts/<target>/ and prints how to reproduce it; the
# corpus replay test (ipc-proto/tests/fuzz_corpus.rs) and tests/malformed_input.rs are where
# such inputs end up.
#
# Builds go to fuzz/target (or $CARGO_TARGET_DIR), apart from the workspace's.
set -euo pipefail

secs="${1:-20}"
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [seconds per target] [target...]" >&2
    exit 2
    ;;
esac
if (($# > 0)); then
    shift
fi

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
# -a: debug assertions and overflow checks, which is how the fuzzers find arithmetic overflow.
# No sanitizer: ipc-proto forbids `unsafe`, and without AddressSanitizer a target runs about
# five times as many inputs in the same time.
flags=(--debug-assertions --sanitizer none)

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked --quiet >"$scratch/install.log" 2>&1; then
        cat "$scratch/install.log" >&2
        echo "fuzz: could not install cargo-fuzz" >&2
        exit 1
    fi
fi

if ! cargo fuzz build "${flags[@]}" >"$scratch/build.log" 2>&1; then
    cat "$scratch/build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
fi

all=$(cargo fuzz list)
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets <<<"$all"
fi
for target in "${targets[@]}"; do
    if ! grep -qx -- "$target" <<<"$all"; then
        echo "fuzz: no target $target; there are: $(tr '\n' ' ' <<<"$all")" >&2
        exit 2
    fi
done

failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/corpus/$target" "corpus/$target"
    log="$scratch/$target.log"
    # New inputs go to the scratch corpus (the first directory); the seeds are only read.
    # -timeout: an input taking longer than 10 s counts as a crash (a hang), instead of
    # libFuzzer's 20-minute default.
    if cargo fuzz run "${flags[@]}" "$target" "$scratch/corpus/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        done=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done")
        execs=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$done")
        echo "fuzz $target: ok, ${runs:-?} runs in ${secs}s (${execs:-?}/s), cov ${cov:-?}"
    else
        failed+=("$target")
        echo "fuzz $target: FAILED" >&2
        # The panic message and backtrace, the artifact and the command to reproduce it.
        grep -E -A40 "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -n 80 >&2 || tail -n 60 "$log" >&2
        grep -E "Test unit written to|Reproduce with|cargo fuzz run" "$log" >&2 || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
