#!/usr/bin/env bash
# Two builds of gpu-market under the same book+release load at the same time: prints each one's cycles
# per second and server CPU per cycle, and B's CPU per cycle over A's. Prints figures, never passes or
# fails on them.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#
# Why at the same time: on a shared machine the cores' speed drifts from one run to the next (a fixed
# Python loop took 0.20-0.25 s here, and bench/load.sh's CPU per cycle ranged over 160-280 µs for one
# binary), so two builds measured in turn differ by more than most changes do. Loaded together, both
# servers meet the same drift, and the ratio of their CPU per cycle holds from round to round. The
# figures are not the ones bench/load.sh gives: four processes share the cores, commits group less, and
# each cycle costs more CPU than it would alone.
#
# Each server gets a fresh SQLite database (sqlite_synchronous = "full") with the deployed policies
# (BENCH_POLICIES=builtin: the native rules) and BENCH_GPUS GPUs; each round runs bench/wrk/cycle.lua
# against both for BENCH_DURATION seconds with BENCH_CONNECTIONS connections each.
#
# Knobs: BENCH_ROUNDS (3), BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_CONNECTIONS (16), BENCH_GPUS (100),
# BENCH_POLICIES (wasm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -eq 2 && -x "$1" && -x "$2" ]] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
BINARIES=("$1" "$2")
ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
GPUS="${BENCH_GPUS:-100}"
command -v wrk >/dev/null 2>&1 || { echo "bench/ab.sh needs wrk (apt-get install wrk)" >&2; exit 1; }

WORK="$(mktemp -d -t gpu-market-ab.XXXXXX)"
PIDS=()
cleanup() {
    if ((${#PIDS[@]})); then
        kill "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PORTS=()
for side in 0 1; do
    dir="$WORK/$side"
    mkdir -p "$dir/policies"
    [[ "${BENCH_POLICIES:-wasm}" == builtin ]] || cp "$ROOT"/policies/policies.toml "$ROOT"/policies/*.wasm "$dir/policies/"
    port="$(free_port)"
    PORTS+=("$port")
    GPU_MARKET_LOG=warn RUST_LOG=warn GPU_MARKET_DATABASE__SQLITE_SYNCHRONOUS=full "${BINARIES[$side]}" serve \
        --bind "127.0.0.1:$port" --database-url "sqlite://$dir/market.db" --policies "$dir/policies" \
        >"$dir/server.log" 2>&1 &
    PIDS+=($!)
done
for side in 0 1; do
    url="http://127.0.0.1:${PORTS[$side]}"
    for _ in $(seq 1 200); do curl -sf "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -sf "$url/health" >/dev/null || { cat "$WORK/$side/server.log" >&2; exit 1; }
    for i in $(seq 1 "$GPUS"); do
        curl -sf -X POST -H 'Content-Type: application/json' -H 'X-Miner-ID: default' \
            -d "{\"gpu\": {\"name\": \"A100\", \"memory_gb\": 80, \"cuda_cores\": 6912, \"compute_capability\": \"8.0\",
                 \"price_per_hour\": 1.$((i % 50)), \"region\": \"eu-west\", \"cuda_version\": \"12.4\", \"capabilities\": [\"cuda\"]}}" \
            "$url/v1/marketplace/gpu/register" | grep -o '"gpu_id":"[^"]*"' | cut -d'"' -f4
    done >"$WORK/$side/ids"
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cycle() { # side seconds
    GM_BENCH_COMMON="$ROOT/bench/wrk/common.lua" GM_BENCH_IDS="$WORK/$1/ids" GM_BENCH_THREADS=1 \
        wrk -t1 -c"$CONNECTIONS" -d"$2s" --timeout 5s -s "$ROOT/bench/wrk/cycle.lua" \
        "http://127.0.0.1:${PORTS[$1]}/v1/marketplace/gpu/" | sed -n 's/^RESULT.*cycles=\([0-9]*\).*/\1/p'
}
# What a round's end left booked is released, so every round starts from free GPUs.
release_all() {
    for side in 0 1; do
        while read -r id; do
            curl -s -o /dev/null -X POST "http://127.0.0.1:${PORTS[$side]}/v1/marketplace/gpu/$id/release"
        done <"$WORK/$side/ids"
    done
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

cycle 0 "$WARMUP" >/dev/null &
warmup=$!
cycle 1 "$WARMUP" >/dev/null
wait "$warmup"
printf '%-6s %16s %16s %16s %16s %8s\n' round "A cycles/s" "A µs/cycle" "B cycles/s" "B µs/cycle" "B/A µs"
RATIOS=()
for round in $(seq 1 "$ROUNDS"); do
    release_all
    before=("$(cpu_ticks "${PIDS[0]}")" "$(cpu_ticks "${PIDS[1]}")")
    cycle 0 "$DURATION" >"$WORK/0/cycles" &
    load=$!
    cycle 1 "$DURATION" >"$WORK/1/cycles"
    wait "$load"
    figures=()
    for side in 0 1; do
        cycles="$(cat "$WORK/$side/cycles")"
        ticks=$(($(cpu_ticks "${PIDS[$side]}") - before[side]))
        figures+=("$(awk -v c="$cycles" -v d="$DURATION" 'BEGIN { printf "%.0f", c / d }')")
        figures+=("$(awk -v t="$ticks" -v us="$TICK_US" -v c="$cycles" 'BEGIN { printf "%.1f", t * us / c }')")
    done
    ratio="$(awk -v a="${figures[1]}" -v b="${figures[3]}" 'BEGIN { printf "%.3f", b / a }')"
    RATIOS+=("$ratio")
    printf '%-6s %16s %16s %16s %16s %8s\n' "$round" "${figures[@]}" "$ratio"
done
median="$(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
echo "B's server CPU per book+release cycle over A's: median $median over $ROUNDS rounds"
echo "  A: ${BINARIES[0]}"
echo "  B: ${BINARIES[1]}"
