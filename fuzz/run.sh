#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints target / execs / crashes.
#
#   fuzz/run.sh [seconds-per-target] [target ...]     (default 60 s, all targets)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target
# starts from fuzz/seeds/<target> (from the repo's fixtures, `seeds.py`), fuzz/regressions/<target>
# (inputs that once crashed; each is also a unit test) and fuzz/corpus/<target> (what earlier
# runs found, not committed), with the dictionary fuzz/dicts/<target>.dict. libFuzzer runs in fork mode with -ignore_crashes, so a crash does
# not end the run: each crashing input lands in fuzz/artifacts/<target>/ and the run goes on.
# Logs: fuzz/logs/<target>.log.
set -euo pipefail

cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL=(rackspace sakura_json sakura_csv racknap threescale_xml prometheus config_toml detect_csv file_csv)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

[ -n "${NO_BUILD:-}" ] || cargo +nightly fuzz build -O
TRIPLE="$(rustc +nightly -vV | sed -n 's/^host: //p')"
BIN="target/$TRIPLE/release"
mkdir -p logs

rows=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    # Fork mode keeps going after a crash; the budget covers the whole target.
    extra=()
    [ -d "regressions/$t" ] && extra=("regressions/$t")
    "$BIN/$t" "corpus/$t" "seeds/$t" "${extra[@]}" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=16384 -dict="dicts/$t.dict" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || true
    # Fork-mode status lines: `#N: cov: … oom/timeout/crash: a/b/c time: …`.
    last=$(grep -E '^#[0-9]+: cov:' "logs/$t.log" | tail -1 || true)
    execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    oom_to_crash=$(sed -nE 's#.*oom/timeout/crash: ([0-9]+/[0-9]+/[0-9]+).*#\1#p' <<<"$last")
    after=$(find "artifacts/$t" -type f | wc -l)
    rows+=("$t|${execs:-0}|${oom_to_crash:-0/0/0}|$((after - before))")
done

printf '\n%-16s %12s %10s %20s %14s\n' target execs execs/s "oom/timeout/crash" "new artifacts"
for r in "${rows[@]}"; do
    IFS='|' read -r t execs otc new <<<"$r"
    printf '%-16s %12s %10s %20s %14s\n' "$t" "$execs" "$((execs / SECONDS_PER_TARGET))" "$otc" "$new"
done
printf '\n%s s per target; %s\n' "$SECONDS_PER_TARGET" "$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
