#!/usr/bin/env bash
# Side by side with Prometheus, one run: the bench world (N accounts × M line items, hourly,
# D days) backfilled into Debian's Prometheus with `promtool tsdb create-blocks-from
# openmetrics`, the `unit-cost` rule as a PromQL recording rule plus an alerting rule against
# its 7-day baseline, Prometheus's own rule-group evaluation time, then spendwatch's
# evaluation of its `unit-cost` rule over the same world (`spendwatch bench`), and the ratio.
#
#   benches/prometheus-side-by-side.sh [ACCOUNTS=1000] [ITEMS=20] [DAYS=9]
#
# Environment: INTERVAL (rule group interval, 15s), EVALUATIONS (measured after the TSDB
# settles, 4), DEADLINE (seconds to wait for them, 900), PORT (9095), KEEP=1 keeps the work
# dir. Both systems run under `nice -n 10` (a shared machine). Needs promtool, prometheus,
# curl, jq. Everything listens on 127.0.0.1 only.
set -euo pipefail

ACCOUNTS=${1:-1000}
ITEMS=${2:-20}
DAYS=${3:-9}
INTERVAL=${INTERVAL:-15s}
EVALUATIONS=${EVALUATIONS:-4}
DEADLINE=${DEADLINE:-900}
PORT=${PORT:-9095}
GROUP=spendwatch-unit-cost

cd "$(dirname "$0")/.."
for tool in promtool prometheus curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install prometheus curl jq)" >&2; exit 2; }
done
echo "== $(prometheus --version 2>&1 | head -1)"
nice -n 10 cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/spendwatch

WORK=$(mktemp -d "${TMPDIR:-/tmp}/spendwatch-vs-prometheus.XXXXXX")
PROM_PID=
cleanup() {
  if [[ -n $PROM_PID ]]; then kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; fi
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# One end for both systems: the world is the same only for the same last hour.
END=$(date -u +%Y-%m-%dT%H:00:00Z)
WORLD=(--accounts "$ACCOUNTS" --items "$ITEMS" --days "$DAYS" --end "$END")

echo "== export: $ACCOUNTS accounts × $ITEMS items, $DAYS days ending $END"
"$BIN" bench "${WORLD[@]}" --openmetrics "$WORK/world.om" \
  --prometheus-rules "$WORK/rules.yml" --rule-interval "$INTERVAL"
ls -l "$WORK/world.om" | awk '{printf "openmetrics file: %.1f MB\n", $5 / 1e6}'
promtool check rules "$WORK/rules.yml" >/dev/null

echo "== promtool tsdb create-blocks-from openmetrics"
started=$(date +%s)
# Blocks as long as the TSDB's own compaction would make them (its hidden flag; 2h otherwise).
nice -n 10 promtool tsdb create-blocks-from openmetrics --quiet --max-block-duration=744h \
  "$WORK/world.om" "$WORK/tsdb"
echo "backfill: $(( $(date +%s) - started )) s, $(find "$WORK/tsdb" -mindepth 1 -maxdepth 1 -type d | wc -l) blocks, $(du -sm "$WORK/tsdb" | cut -f1) MB"
rm "$WORK/world.om"

cat >"$WORK/prometheus.yml" <<EOF
global:
  evaluation_interval: $INTERVAL
rule_files:
  - $WORK/rules.yml
EOF
# Retention far beyond the world (its data is backfilled, in the past).
nice -n 10 prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$PORT" \
  --log.level=warn 2>"$WORK/prometheus.log" &
PROM_PID=$!
API="http://127.0.0.1:$PORT/api/v1"

# Prometheus's own metric NAME (summed over the lines that contain FILTER), from /metrics.
metric() {
  curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" -v f="${2:-}" \
    '$1 ~ ("^" n "(\\{|$)") && index($0, f) { s += $NF; found = 1 } END { if (found) printf "%.9g\n", s }'
}
# One number from an instant query over the TSDB (empty when no series).
scalar() {
  curl -sf --data-urlencode "query=$1" "$API/query" | jq -r '.data.result[0].value[1] // empty'
}
deadline=$(( $(date +%s) + DEADLINE ))
wait_until() { # description, command
  until eval "$2"; do
    kill -0 "$PROM_PID" 2>/dev/null || { echo "prometheus exited:"; cat "$WORK/prometheus.log"; exit 1; }
    (( $(date +%s) < deadline )) || { echo "timed out waiting for $1"; tail -20 "$WORK/prometheus.log"; exit 1; }
    sleep 1
  done
}
wait_until "prometheus ready" 'curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null'

iterations() { metric prometheus_rule_group_iterations_total ";$GROUP\""; }
# The TSDB may still compact the backfilled blocks after start-up (its loop runs each
# minute): measure only once the block count has held still for 35 s past the first 75 s.
echo "== waiting for the TSDB to settle (compaction of the backfilled blocks)"
settle_start=$(date +%s)
blocks=-1; stable_since=0
while :; do
  now_blocks=$(metric prometheus_tsdb_blocks_loaded); now_blocks=${now_blocks:-0}
  if [[ $now_blocks != "$blocks" ]]; then blocks=$now_blocks; stable_since=$(date +%s); fi
  (( $(date +%s) - settle_start > 75 && $(date +%s) - stable_since > 35 )) && break
  (( $(date +%s) < deadline )) || { echo "timed out waiting for the TSDB to settle"; exit 1; }
  sleep 5
done
echo "blocks loaded: $blocks, compactions run: $(metric prometheus_tsdb_compactions_total)"
base=$(iterations); base=${base:-0}
want=$(( ${base%.*} + EVALUATIONS ))
echo "== waiting for $EVALUATIONS rule-group evaluations (from $base)"
wait_until "$EVALUATIONS evaluations" '[[ $(iterations) -ge $want ]] 2>/dev/null'

group=$(curl -sf "$API/rules" | jq -c --arg g "$GROUP" '.data.groups[] | select(.name == $g)')
prom_last=$(metric prometheus_rule_group_last_duration_seconds ";$GROUP\"")
prom_samples=$(metric prometheus_rule_group_last_evaluation_samples ";$GROUP\"")
prom_missed=$(metric prometheus_rule_group_iterations_missed_total ";$GROUP\"")
# All of the group's evaluations (the summary is per process; only this group runs).
prom_mean=$(awk -v s="$(metric prometheus_rule_group_duration_seconds_sum)" \
  -v c="$(metric prometheus_rule_group_duration_seconds_count)" 'BEGIN { printf "%.3f", s / c }')
prom_record=$(jq -r '.rules[] | select(.type == "recording") | .evaluationTime' <<<"$group")
prom_alert=$(jq -r '.rules[] | select(.type == "alerting") | .evaluationTime' <<<"$group")
recorded=$(scalar 'count(account:spendwatch_unit_cost_per_1k:1d)')
alerts=$(scalar 'count(ALERTS{alertname="UnitCostAboveBaseline"})')
rss=$(metric process_resident_memory_bytes)
prom_iterations=$(iterations)
kill "$PROM_PID"; wait "$PROM_PID" 2>/dev/null || true; PROM_PID=
[[ ${recorded:-0} == "$ACCOUNTS" ]] || { echo "Prometheus recorded ${recorded:-no} unit costs for $ACCOUNTS accounts: it did not see the data"; exit 1; }

echo "== spendwatch bench over the same world (store ingest first, then the rules)"
table=$(nice -n 10 "$BIN" bench "${WORLD[@]}" 2>/dev/null)
echo "$table"
sw_line=$(grep '^| rule `unit-cost`' <<<"$table")
sw_steady=$(sed -E 's/.*\/ ([0-9.]+) s \|$/\1/' <<<"$sw_line")
sw_first=$(sed -E 's/.*\| ([0-9.]+) s \/.*/\1/' <<<"$sw_line")

echo
echo "== side by side: $ACCOUNTS accounts × $ITEMS items × $DAYS days = $(( ACCOUNTS * (ITEMS + 2) )) series in each"
printf '| %s | %s |\n|---|---|\n' measure value
printf '| Prometheus rule group (record + alert), last evaluation | %.3f s (%s samples out) |\n' "$prom_last" "$prom_samples"
printf '| Prometheus rule group, mean of all %s evaluations | %s s (%s missed iterations) |\n' "$prom_iterations" "$prom_mean" "${prom_missed:-0}"
printf '| of which the recording rule / the alerting rule | %.3f s / %.3f s |\n' "$prom_record" "$prom_alert"
printf '| Prometheus unit costs recorded / alerts | %s / %s |\n' "$recorded" "${alerts:-0}"
printf '| Prometheus RSS after the evaluations | %.0f MB |\n' "$(awk -v r="${rss:-0}" 'BEGIN { print r / 1e6 }')"
printf '| spendwatch `unit-cost` rule, first / steady evaluation | %s s / %s s |\n' "$sw_first" "$sw_steady"
printf '| ratio spendwatch steady / Prometheus group (last) | %.2f |\n' "$(awk -v a="$sw_steady" -v b="$prom_last" 'BEGIN { print a / b }')"
