#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer, nightly Rust) of the targets in fuzz/:
# the agent channel's frame decoder (channel_frame) and the CLI's tenant spec reader
# (spec_tenant). A benchmark, not a CI check: it runs each target for a bounded time and
# prints libFuzzer's figures (executions, executions per second, coverage, corpus, memory).
#
# Usage: scripts/fuzz.sh [-t SECONDS] [TARGET...]     (default: every target, 60 s each)
#
# Environment (all optional):
#   FUZZ_SECONDS    seconds per target (default 60; -t wins)
#   FUZZ_TOOLCHAIN  the nightly toolchain to use (default nightly)
#   FUZZ_SANITIZER  address (default), leak, memory, thread or none (fastest)
#   FUZZ_DEBUG_ASSERTIONS  1 (default): debug assertions and overflow checks on; 0: off
#   FUZZ_ARGS       more libFuzzer flags, e.g. "-jobs=4 -workers=4" or "-max_len=65536"
#   FUZZ_OUT        where the logs and summary go (default results/fuzz-coverage, git-ignored)
#
# Installs what is missing: the nightly toolchain (rustup) and cargo-fuzz (cargo install).
# Corpora grow in fuzz/corpus/TARGET (git-ignored) from the seeds in fuzz/seeds/TARGET, so
# each run starts where the last one stopped. A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes the script exit 1 (after the other targets ran); replay it
# with: cargo +nightly fuzz run --fuzz-dir fuzz TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${FUZZ_SECONDS:-60}"
if [ "${1:-}" = "-t" ]; then
  seconds="${2:?-t needs a number of seconds}"
  shift 2
fi
case "$seconds" in
  '' | *[!0-9]*) echo "scripts/fuzz.sh: seconds must be a whole number, got $seconds" >&2; exit 64 ;;
esac
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-address}"
out="${FUZZ_OUT:-results/fuzz-coverage}"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "==> installing the $toolchain toolchain (cargo-fuzz needs nightly Rust)"
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

mapfile -t all < <(cargo "+$toolchain" fuzz list --fuzz-dir fuzz)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
  if [[ ! " ${all[*]} " =~ " $t " ]]; then
    echo "scripts/fuzz.sh: no target $t; the targets are: ${all[*]}" >&2
    exit 64
  fi
done

build=(--fuzz-dir fuzz --sanitizer "$sanitizer")
if [ "${FUZZ_DEBUG_ASSERTIONS:-1}" = 1 ]; then build+=(--debug-assertions); fi

for t in "${targets[@]}"; do
  echo "==> building $t (sanitizer $sanitizer)"
  cargo "+$toolchain" fuzz build "${build[@]}" "$t"
done

mkdir -p "$out"
summary="$out/summary.md"
{
  echo "| target | seconds | executions | exec/s | cov | ft | corpus | peak RSS MB | result |"
  echo "|---|---|---|---|---|---|---|---|---|"
} >"$summary"
failed=0
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  seeds=()
  if [ -d "fuzz/seeds/$t" ]; then seeds=("fuzz/seeds/$t"); fi
  flags=(-max_total_time="$seconds" -print_final_stats=1)
  if [ -f "fuzz/dict/$t.dict" ]; then flags+=(-dict="fuzz/dict/$t.dict"); fi
  # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
  flags+=(${FUZZ_ARGS:-})
  log="$out/$t.log"
  echo "==> fuzzing $t for $seconds s (corpus $corpus, log $log)"
  status=0
  cargo "+$toolchain" fuzz run "${build[@]}" "$t" "$corpus" "${seeds[@]}" -- "${flags[@]}" \
    >"$log" 2>&1 || status=$?
  # libFuzzer's own lines: the start, a few progress pulses, the end and its statistics.
  # A panic's message is on the line after "panicked at".
  awk '/^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|pulse|DONE)|stat::)|ERROR|SUMMARY|Test unit written/ { print }
       /panicked at/ { print; if ((getline line) > 0) print line }' "$log" | tail -n 30

  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  last_line=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)
  line="${done_line:-$last_line}"
  field() { sed -nE "s/.* $1: ([^ ]+).*/\\1/p" <<<"$line"; }
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  if [ "$status" -eq 0 ]; then
    result="no crash"
  else
    failed=1
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    result="CRASH (exit $status${artifact:+, input $artifact})"
  fi
  echo "| $t | $seconds | ${execs:-?} | ${rate:-?} | $(field cov) | $(field ft) | $(field corp) | ${rss:-?} | $result |" \
    >>"$summary"
done

echo
echo "==> coverage-guided fuzzing, ${seconds} s per target (sanitizer $sanitizer; $summary)"
cat "$summary"
exit "$failed"
