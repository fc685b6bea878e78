#!/usr/bin/env bash
# Load benchmark for gpu-market: prints figures, never passes or fails on them.
#
#   bench/load.sh                      # SQLite only
#   GPU_MARKET_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bench/load.sh   # both, side by side
#
# For each backend it starts a release build of `gpu-market serve` on a fresh database, registers 100
# GPUs and runs wrk (32 connections, BENCH_DURATION seconds each, after a short warm-up) on:
#   list     GET  /v1/marketplace/gpu/list            (default limit: all 100 GPUs)
#   details  GET  /v1/marketplace/gpu/{id}            (cycling over the 100 ids)
#   cycle    POST /v1/marketplace/gpu/{id}/book then POST .../release, per GPU, over the 100 GPUs
# and prints requests/s and p99 latency per scenario (cycles/s for book+release).
#
# Durable writes are measured against the disk they wait for: just before the cycle scenario the script
# measures the serial sync rate (SQLite: one 4 KiB overwrite + fdatasync after another in the database's
# directory; PostgreSQL: one autocommit INSERT after another on one connection, each waiting for its WAL
# flush) and prints committed writes per second (successful books + releases) ÷ serial syncs per second.
# Above 1, commits share syncs. SQLite runs with sqlite_synchronous = "full".
#
# BENCH_LIFECYCLE=1 (or only) adds the policy lifecycle's cost: cycles with the decision log off, on, and
# on with a pricing shadow, alternated over BENCH_ROUNDS (2) rounds on fresh databases (BENCH_VARIANTS
# picks some of "log-off log-on shadow", or adds "log-tmpfs": the log on, its SQLite file in /dev/shm,
# which tells the log's disk traffic from its CPU cost).
#
# BENCH_CYCLE_ROUNDS=N (1) runs the cycle scenario N times on the same server, each between two sync
# probes, and reports the round with the median writes per serial sync (the lower middle one when N is
# even) and the range over the rounds.
#
# Knobs: BENCH_BIN (measure this binary instead of building one), BENCH_POLICIES (wasm: the deployed policies/; builtin: the native rules), BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_CONNECTIONS (32), BENCH_THREADS (2), BENCH_GPUS (100), BENCH_SYNC_SECONDS (3: SQLite's sync probe), BENCH_SYNC_COMMITS (2000: PostgreSQL's).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
GPUS="${BENCH_GPUS:-100}"
SYNC_SECONDS="${BENCH_SYNC_SECONDS:-3}"
SYNC_COMMITS="${BENCH_SYNC_COMMITS:-2000}"
CYCLE_ROUNDS="${BENCH_CYCLE_ROUNDS:-1}"
[[ "$CYCLE_ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_CYCLE_ROUNDS must be a positive whole number" >&2; exit 2; }
PG_URL="${GPU_MARKET_BENCH_POSTGRES_URL:-}"

say() { printf '==> %s\n' "$*" >&2; }

# ---- tools -------------------------------------------------------------------------------------
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [[ -n "$PG_URL" ]] && ! command -v psql >/dev/null 2>&1; then need_apt+=(postgresql-client); fi
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]}"
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [[ -n "${BENCH_BIN:-}" ]]; then
    # Another build (an earlier commit, say) measured by the same script on the same machine.
    BIN="$BENCH_BIN"
else
    say "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet --bin gpu-market)
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    BIN="$TARGET_DIR/release/gpu-market"
fi
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d -t gpu-market-bench.XXXXXX)"
SERVER_PID=""
PG_DB=""
SERVER_LOG=""
cleanup() {
    local rc=$?
    if [[ -n "$SERVER_PID" ]]; then
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            local status=0
            wait "$SERVER_PID" 2>/dev/null || status=$?
            echo "gpu-market (pid $SERVER_PID) had exited with status $status (128+n = killed by signal n)" >&2
        else
            kill "$SERVER_PID" 2>/dev/null || true
            wait "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    if [[ $rc -ne 0 && -n "$SERVER_LOG" && -f "$SERVER_LOG" ]]; then
        echo "---- last lines of $SERVER_LOG ----" >&2
        tail -n 40 "$SERVER_LOG" >&2
    fi
    if [[ -n "$PG_DB" ]]; then psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true; fi
    if [[ -f "$WORK/shm-links/list" ]]; then
        while read -r target; do rm -f "$target" "$target-wal" "$target-shm"; done <"$WORK/shm-links/list"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- wrk scripts ---------------------------------------------------------------------------------
# bench/wrk/: common.lua (thread indexes, the GPU ids, the RESULT line), list.lua, details.lua and
# cycle.lua (book+release); bench/ab.sh runs the same cycle.
WRK_SCRIPTS="$ROOT/bench/wrk"

# ---- serial sync rate ------------------------------------------------------------------------------
# SQLite in WAL mode with synchronous = FULL syncs the log once per commit. The probe overwrites 4 KiB
# blocks of a preallocated file with fdatasync after each: the cheapest sync such a commit can cost, so
# that a slow probe cannot flatter the ratio.
serial_syncs_per_second() { # directory
    python3 - "$1" "$SYNC_SECONDS" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "sync-probe")
seconds = float(sys.argv[2])
blocks = 64
block = os.urandom(4096)
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
try:
    os.pwrite(fd, b"\0" * (blocks * 4096), 0)
    os.fsync(fd)
    syncs = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        os.pwrite(fd, block, (syncs % blocks) * 4096)
        os.fdatasync(fd)
        syncs += 1
    print(f"{syncs / (time.monotonic() - start):.0f}")
finally:
    os.close(fd)
    os.unlink(path)
PY
}

# PostgreSQL's disk is the server's: its serial commit rate is one autocommit INSERT after another on
# one connection (synchronous_commit decides whether each waits for its WAL flush; the report shows it).
pg_serial_commits_per_second() { # database_url
    local url="$1"
    psql "$url" -q -v ON_ERROR_STOP=1 -c "CREATE TABLE bench_sync_probe (n integer)" >/dev/null
    seq 1 "$SYNC_COMMITS" | sed 's/.*/INSERT INTO bench_sync_probe VALUES (&);/' >"$WORK/sync_probe.sql"
    local start end
    start="$(date +%s.%N)"
    psql "$url" -q -v ON_ERROR_STOP=1 -f "$WORK/sync_probe.sql" >/dev/null
    end="$(date +%s.%N)"
    psql "$url" -q -c "DROP TABLE bench_sync_probe" >/dev/null
    awk -v n="$SYNC_COMMITS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }'
}

measure_syncs() { # backend database_url
    local backend="$1" database_url="$2" rate
    if [[ "$backend" == sqlite ]]; then
        rate="$(serial_syncs_per_second "$WORK/sqlite")"
        RESULT["$backend,sync_how"]="fdatasync, $(df -P "$WORK/sqlite" | awk 'NR == 2 { print $1 }')"
    else
        rate="$(pg_serial_commits_per_second "$database_url")"
        RESULT["$backend,sync_how"]="synchronous_commit=$(psql "$database_url" -Atc 'SHOW synchronous_commit'), fsync=$(psql "$database_url" -Atc 'SHOW fsync')"
    fi
    # Measured before and after the cycle run: the mean follows a disk whose speed drifts (shared disks do).
    if [[ -n "${RESULT["$backend,syncs"]:-}" ]]; then
        rate="$(awk -v a="${RESULT["$backend,syncs"]}" -v b="$rate" 'BEGIN { printf "%.0f", (a + b) / 2 }')"
    fi
    RESULT["$backend,syncs"]="$rate"
    say "$backend serial syncs: $rate/s (${RESULT["$backend,sync_how"]})"
}

# ---- one backend ---------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)); }

declare -A RESULT

# User + system CPU time of the server process so far, in clock ticks.
server_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }

run_wrk() { # backend scenario script url
    local backend="$1" scenario="$2" script="$3" url="$4"
    GM_BENCH_COMMON="$WRK_SCRIPTS/common.lua" GM_BENCH_IDS="$WORK/ids" GM_BENCH_THREADS="$THREADS" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$script" "$url" >/dev/null 2>&1 || true
    if [[ "$scenario" == cycle* ]]; then reset_bookings "$url"; fi
    local out cpu_before
    cpu_before="$(server_cpu_ticks)"
    out="$(GM_BENCH_COMMON="$WRK_SCRIPTS/common.lua" GM_BENCH_IDS="$WORK/ids" GM_BENCH_THREADS="$THREADS" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$script" "$url")"
    local cpu_ticks=$(($(server_cpu_ticks) - cpu_before))
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "gpu-market ($backend) is no longer running after the $scenario run; its log ends with:" >&2
        tail -n 40 "$WORK/$backend/server.log" >&2
        exit 1
    fi
    local line
    line="$(grep '^RESULT' <<<"$out")" || { echo "$out" >&2; echo "wrk gave no RESULT" >&2; exit 1; }
    local requests duration p99 non2xx errors cycles failed
    requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")"
    duration="$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")"
    p99="$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")"
    non2xx="$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")"
    errors="$(sed -E 's/.*socket_errors=([0-9]+).*/\1/' <<<"$line")"
    cycles="$(sed -E 's/.*cycles=([0-9]+).*/\1/' <<<"$line")"
    failed="$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line")"
    local rps per_s per=request
    [[ "$scenario" == cycle* ]] && per=cycle
    rps="$(awk -v n="$requests" -v d="$duration" 'BEGIN { printf "%.0f", n / (d / 1e6) }')"
    if [[ "$scenario" == cycle* ]]; then
        per_s="$(awk -v n="$cycles" -v d="$duration" 'BEGIN { printf "%.0f", n / (d / 1e6) }')"
    else
        per_s="$rps"
    fi
    RESULT["$backend,$scenario,rate"]="$per_s"
    # The server's CPU time per cycle (or request) over the run: steadier than the rate on a disk whose
    # sync latency drifts, and what the rate comes down to on a machine whose cores are all busy.
    RESULT["$backend,$scenario,cpu_us"]="$(awk -v t="$cpu_ticks" -v hz="$(getconf CLK_TCK)" \
        -v n="$([[ "$scenario" == cycle* ]] && echo "$cycles" || echo "$requests")" \
        'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print 0 }')"
    RESULT["$backend,$scenario,rps"]="$rps"
    RESULT["$backend,$scenario,p99"]="$(awk -v p="$p99" 'BEGIN { printf "%.2f", p / 1000 }')"
    RESULT["$backend,$scenario,errors"]="$non2xx non-2xx, $errors socket errors, $failed failed book/release"
    say "$backend $scenario: $per_s/s (requests $rps/s), p99 ${RESULT["$backend,$scenario,p99"]} ms, server CPU ${RESULT["$backend,$scenario,cpu_us"]} µs per ${per:-request}; ${RESULT["$backend,$scenario,errors"]}"
}

# Releases whatever the warm-up left booked, so the measured cycle starts from free GPUs.
reset_bookings() {
    local base="${1%%/v1/*}"
    while read -r id; do
        curl -s -o /dev/null -X POST -H 'X-Api-Key: ' "$base/v1/marketplace/gpu/$id/release" || true
    done <"$WORK/ids"
}

# Starts the server on `database_url` with the deployed policies (BENCH_POLICIES=builtin: the native
# rules) and `variant`'s changes: "log-off" disables the decision log, "shadow" adds
# pricing-scarcity.wasm as the pricing slot's shadow. Sets SERVER_PID and BASE.
start_server() { # backend database_url variant
    local backend="$1" database_url="$2" variant="${3:-}"
    local port
    port="$(free_port)"
    BASE="http://127.0.0.1:$port"
    rm -rf "$WORK/$backend/policies"
    mkdir -p "$WORK/$backend/policies"
    if [[ "${BENCH_POLICIES:-wasm}" != builtin ]]; then
        cp "$ROOT"/policies/policies.toml "$ROOT"/policies/*.wasm "$WORK/$backend/policies/"
    fi
    local log_enabled=true
    case "$variant" in
        log-off) log_enabled=false ;;
        log-tmpfs)
            # The log's file (`x.db` -> `x.decisions.db`) as a link into memory; SQLite follows it and
            # keeps the file's WAL beside its target.
            local db="${database_url#sqlite://}"
            db="${db%%\?*}"
            mkdir -p "$WORK/shm-links"
            local target
            target="$(mktemp -u /dev/shm/gpu-market-bench.XXXXXX).decisions.db"
            echo "$target" >>"$WORK/shm-links/list"
            ln -sf "$target" "${db%.db}.decisions.db"
            ;;
        shadow) printf '\n[pricing.shadow]\nfile = "pricing-scarcity.wasm"\n' >>"$WORK/$backend/policies/policies.toml" ;;
    esac
    say "starting gpu-market on $backend ($BASE), policies: ${BENCH_POLICIES:-wasm}${variant:+, $variant}"
    SERVER_LOG="$WORK/$backend/server.log"
    GPU_MARKET_LOG=warn RUST_LOG=warn GPU_MARKET_DATABASE__SQLITE_SYNCHRONOUS=full \
        GPU_MARKET_DECISION_LOG__ENABLED="$log_enabled" "$BIN" serve --bind "127.0.0.1:$port" --database-url "$database_url" \
        --policies "$WORK/$backend/policies" >"$WORK/$backend/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        curl -sf "$BASE/health" >/dev/null 2>&1 && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/$backend/server.log" >&2; exit 1; fi
        sleep 0.1
    done
    curl -sf "$BASE/health" >/dev/null || { cat "$WORK/$backend/server.log" >&2; exit 1; }
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

register_gpus() { # base
    local base="$1"
    say "registering $GPUS GPUs"
    local models=("RTX 4090" "RTX 3090" "A100" "H100 SXM" "L40S")
    local regions=("eu-west" "us-east" "ap-south")
    : >"$WORK/ids"
    for i in $(seq 0 $((GPUS - 1))); do
        local model="${models[$((i % 5))]}" region="${regions[$((i % 3))]}"
        local price
        price="$(awk -v i="$i" 'BEGIN { printf "%.6f", 0.25 + (i % 17) * 0.137 }')"
        local body="{\"gpu\": {\"name\": \"$model\", \"memory_gb\": $((24 + (i % 4) * 16)), \"cuda_cores\": 16384, \
\"compute_capability\": \"8.9\", \"price_per_hour\": $price, \"region\": \"$region\", \"cuda_version\": \"12.4\", \
\"capabilities\": [\"cuda\", \"llm\"], \"description\": \"bench node $i, rack $((i / 10))\"}}"
        local answer
        answer="$(curl -sf -X POST -H 'Content-Type: application/json' -H 'X-Api-Key: ' -H 'X-Miner-ID: default' \
            -d "$body" "$base/v1/marketplace/gpu/register")"
        grep -o '"gpu_id":"[^"]*"' <<<"$answer" | cut -d'"' -f4 >>"$WORK/ids"
    done
    [[ "$(wc -l <"$WORK/ids")" -eq "$GPUS" ]] || { echo "registration failed" >&2; exit 1; }
}

bench_backend() { # name database_url
    local backend="$1" database_url="$2"
    start_server "$backend" "$database_url"
    local base="$BASE"
    register_gpus "$base"
    local list_bytes
    list_bytes="$(curl -s "$base/v1/marketplace/gpu/list" | wc -c)"
    say "list response: $list_bytes bytes"

    run_wrk "$backend" list "$WRK_SCRIPTS/list.lua" "$base/v1/marketplace/gpu/list"
    run_wrk "$backend" details "$WRK_SCRIPTS/details.lua" "$base/v1/marketplace/gpu/"
    # Each round: the disk's sync rate, the cycles, the sync rate again. The report keeps the round with
    # the median writes per sync and the range over all of them (a shared machine's disk and cores drift
    # by several percent from one run to the next).
    local round key ratios=()
    for round in $(seq 1 "$CYCLE_ROUNDS"); do
        unset "RESULT[$backend,syncs]"
        measure_syncs "$backend" "$database_url"
        run_wrk "$backend" cycle "$WRK_SCRIPTS/cycle.lua" "$base/v1/marketplace/gpu/"
        measure_syncs "$backend" "$database_url"
        # Each cycle commits two writes: its booking and its release.
        RESULT["$backend,writes"]="$(awk -v c="${RESULT["$backend,cycle,rate"]}" 'BEGIN { printf "%.0f", 2 * c }')"
        RESULT["$backend,writes_per_sync"]="$(awk -v w="${RESULT["$backend,writes"]}" -v s="${RESULT["$backend,syncs"]}" \
            'BEGIN { if (s > 0) printf "%.2f", w / s; else print "-" }')"
        for key in cycle,rate cycle,rps cycle,p99 cycle,cpu_us cycle,errors syncs writes writes_per_sync; do
            RESULT["$backend,round$round,$key"]="${RESULT["$backend,$key"]}"
        done
        ratios+=("${RESULT["$backend,writes_per_sync"]} $round")
        ((CYCLE_ROUNDS > 1)) && say "$backend cycle round $round: ${RESULT["$backend,writes_per_sync"]} writes per serial sync"
    done
    local sorted median_round
    sorted="$(printf '%s\n' "${ratios[@]}" | sort -n)"
    median_round="$(sed -n "$(((CYCLE_ROUNDS + 1) / 2))p" <<<"$sorted" | cut -d' ' -f2)"
    for key in cycle,rate cycle,rps cycle,p99 cycle,cpu_us cycle,errors syncs writes writes_per_sync; do
        RESULT["$backend,$key"]="${RESULT["$backend,round$median_round,$key"]}"
    done
    RESULT["$backend,writes_per_sync_range"]="$(head -1 <<<"$sorted" | cut -d' ' -f1)-$(tail -1 <<<"$sorted" | cut -d' ' -f1)"
    stop_server
}

# The policy lifecycle's cost (issue 9): book+release cycles with the decision log off, on (the
# default), and on with a pricing shadow, each on a fresh database, alternated over BENCH_ROUNDS rounds
# so that a drifting machine weighs on every variant alike. Each round starts with the next variant
# (no variant always follows the same one), and every run starts once the previous run's files are
# on disk (`sync`), so that no run pays for its predecessor's write-back.
read -r -a LIFECYCLE_VARIANTS <<<"${BENCH_VARIANTS:-log-off log-on shadow}"
bench_lifecycle() { # backend database_url_maker
    local backend="$1" make_url="$2"
    local round variant url i n="${#LIFECYCLE_VARIANTS[@]}"
    for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
        for i in $(seq 0 $((n - 1))); do
            variant="${LIFECYCLE_VARIANTS[$(((round - 1 + i) % n))]}"
            url="$("$make_url" "$round-$variant")"
            sync
            start_server "$backend" "$url" "$variant"
            register_gpus "$BASE"
            run_wrk "$backend" "cycle-$variant-$round" "$WRK_SCRIPTS/cycle.lua" "$BASE/v1/marketplace/gpu/"
            if [[ "$variant" == shadow ]]; then
                # How much the shadow did: its pacing decides how many live inputs it skips.
                curl -s -H 'X-Api-Key: ' "$BASE/v1/admin/policies" | python3 -c '
import json, sys
for slot in json.load(sys.stdin):
    shadow = slot.get("shadow") or {}
    if shadow:
        figures = [slot.get(key) for key in ("slot",)] + [shadow.get(key) for key in ("calls", "dropped", "failures")]
        print("==> %s shadow: %s calls, %s inputs skipped, %s failures" % tuple(figures), file=sys.stderr)
' || true
            fi
            stop_server
        done
    done
}

sqlite_url() { mkdir -p "$WORK/sqlite/$1"; echo "sqlite://$WORK/sqlite/$1/bench.db?mode=rwc"; }

# A fresh PostgreSQL database (the same name each time: the previous server is stopped first).
postgres_url() {
    psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" \
        -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
    python3 - "$PG_URL" "$PG_DB" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
print(urlunsplit((parts.scheme, parts.netloc, "/" + sys.argv[2], parts.query, parts.fragment)))
PY
}

BACKENDS=(sqlite)
[[ -n "$PG_URL" ]] && BACKENDS+=(postgres) && PG_DB="gm_bench_$(date +%s)_$$"

# BENCH_LIFECYCLE=only skips the main scenarios.
if [[ "${BENCH_LIFECYCLE:-0}" != only ]]; then
bench_backend sqlite "$(sqlite_url main)"
if [[ -n "$PG_URL" ]]; then
    bench_backend postgres "$(postgres_url)"
fi

# ---- report ----------------------------------------------------------------------------------------
echo
echo "gpu-market load benchmark: $GPUS GPUs, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '%-26s' "scenario"
for b in "${BACKENDS[@]}"; do printf '%16s %12s' "$b /s" "$b p99 ms"; done
[[ ${#BACKENDS[@]} -eq 2 ]] && printf '%18s' "postgres/sqlite"
printf '%22s\n' "target"
declare -A LABEL=([list]="list (GET, 100 GPUs)" [details]="details (GET by id)" [cycle]="book+release cycles")
declare -A TARGET=([list]=">= 4000/s" [details]=">= 15000/s" [cycle]=">= 1500/s (pg 1000)")
for scenario in list details cycle; do
    printf '%-26s' "${LABEL[$scenario]}"
    for b in "${BACKENDS[@]}"; do
        printf '%16s %12s' "${RESULT["$b,$scenario,rate"]}" "${RESULT["$b,$scenario,p99"]}"
    done
    if [[ ${#BACKENDS[@]} -eq 2 ]]; then
        printf '%18s' "$(awk -v p="${RESULT["postgres,$scenario,rate"]}" -v s="${RESULT["sqlite,$scenario,rate"]}" \
            'BEGIN { if (s > 0) printf "%.2f", p / s; else print "-" }')"
    fi
    printf '%22s\n' "${TARGET[$scenario]}"
done
printf '%-26s' "committed writes/s"
for b in "${BACKENDS[@]}"; do printf '%16s %12s' "${RESULT["$b,writes"]}" ""; done
echo
printf '%-26s' "serial syncs/s"
for b in "${BACKENDS[@]}"; do printf '%16s %12s' "${RESULT["$b,syncs"]}" ""; done
echo
printf '%-26s' "writes per serial sync"
for b in "${BACKENDS[@]}"; do printf '%16s %12s' "${RESULT["$b,writes_per_sync"]}" ""; done
[[ ${#BACKENDS[@]} -eq 2 ]] && printf '%18s' ""
printf '%22s\n' ">= 1.5 (sqlite)"
if ((CYCLE_ROUNDS > 1)); then
    echo "  the cycle figures are each backend's median round of $CYCLE_ROUNDS by writes per serial sync; range:$(
        for b in "${BACKENDS[@]}"; do printf ' %s %s;' "$b" "${RESULT["$b,writes_per_sync_range"]}"; done)"
fi
for b in "${BACKENDS[@]}"; do echo "  $b sync probe: ${RESULT["$b,sync_how"]}"; done
echo "p99 target: < 50 ms at $CONNECTIONS connections; postgres target: within 2x of sqlite on reads."
echo "book+release requests/s (2 per cycle):$(for b in "${BACKENDS[@]}"; do printf ' %s %s;' "$b" "${RESULT["$b,cycle,rps"]}"; done)"
for b in "${BACKENDS[@]}"; do
    for scenario in list details cycle; do
        echo "  $b $scenario: ${RESULT["$b,$scenario,errors"]}"
    done
done

fi

# ---- optional: the policy lifecycle's cost (BENCH_LIFECYCLE=1 or only) ------------------------------
if [[ "${BENCH_LIFECYCLE:-0}" != 0 ]]; then
    for b in "${BACKENDS[@]}"; do
        bench_lifecycle "$b" "${b}_url"
    done
    echo
    echo "policy lifecycle cost: book+release cycles/s, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, ${BENCH_ROUNDS:-2} rounds"
    echo "(÷ log off: the ratio of the means, then the median of each round's ratio to that round's log-off run"
    echo " with a 95 % bootstrap interval over rounds; CPU: the server's CPU time per cycle, and its ratio)"
    for b in "${BACKENDS[@]}"; do
        for variant in "${LIFECYCLE_VARIANTS[@]}"; do
            for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
                echo "$b $variant $round ${RESULT["$b,cycle-$variant-$round,rate"]} ${RESULT["$b,cycle-$variant-$round,p99"]} ${RESULT["$b,cycle-$variant-$round,cpu_us"]}"
            done
        done
    done | python3 -c '
import random, statistics, sys
labels = {"log-off": "decision log off", "log-on": "decision log on (default)",
          "shadow": "log on + pricing shadow", "log-tmpfs": "decision log on, its file in memory"}
runs = {}
for line in sys.stdin:
    backend, variant, round_, rate, p99, cpu = line.split()
    runs.setdefault(backend, {}).setdefault(variant, {})[int(round_)] = (float(rate), float(p99), float(cpu))
print("%-10s %-36s %9s %8s %9s %24s %10s %7s" % ("backend", "variant", "cycles/s", "p99 ms", "÷ log off",
      "median ÷ (95 % interval)", "CPU µs/cy", "CPU ÷"))
rng = random.Random(7)
for backend, variants in runs.items():
    base = variants.get("log-off", {})
    mean = lambda v, i: statistics.fmean(r[i] for r in v.values())
    for variant, rounds in variants.items():
        rate, p99, cpu = mean(rounds, 0), mean(rounds, 1), mean(rounds, 2)
        ratio = paired = cpu_ratio = "-"
        if base and variant != "log-off":
            ratio = "%.3f" % (rate / mean(base, 0))
            cpu_ratio = "%.3f" % (cpu / mean(base, 2)) if mean(base, 2) > 0 else "-"
            ratios = [rounds[r][0] / base[r][0] for r in rounds if r in base and base[r][0] > 0]
            if ratios:
                medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
                paired = "%.3f (%.3f-%.3f)" % (statistics.median(ratios), medians[50], medians[1949])
        print("%-10s %-36s %9.0f %8.2f %9s %24s %10.0f %7s" % (backend, labels.get(variant, variant), rate, p99,
              ratio, paired, cpu, cpu_ratio))
'
    echo "targets: decision log on >= 0.90 x log off; a shadow costs no more than noise (its CPU share is capped, default 10 %)"
fi

# ---- optional: the scale scenario (issue 10), owned by bench/scale.sh --------------------------------
if [[ "${BENCH_SCALE:-0}" == 1 ]]; then
    echo
    BENCH_BIN="$BIN" "$ROOT/bench/scale.sh"
fi
