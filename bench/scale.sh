#!/usr/bin/env bash
# Scale benchmark for gpu-market (issue 10): the same market at 100, 10 000 and 100 000 GPUs, printed as
# one table so the growth is visible. Prints figures, never passes or fails on them.
#
#   bench/scale.sh                     # SQLite only
#   GPU_MARKET_BENCH_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/test bench/scale.sh   # both
#
# Per backend one release server (the three deployed WebAssembly policies) on a fresh database grows
# through the sizes. At each size it is seeded up to that many GPUs through the real API (wrk POSTing
# /gpu/register on 32 connections: the honest path, and ~100 000 GPUs a minute or two), the whole
# catalogue is repriced once through the admin sync (the same `refresh_all` the background refresher
# runs, batched through quote-batch) and timed, then wrk measures, BENCH_DURATION seconds each after a
# short warm-up, on BENCH_CONNECTIONS connections:
#   list ...          GET /v1/marketplace/gpu/list?limit=20 with one filter (the aitbc client's page
#                     size), the value changing from request to request over the seeded values
#   details           GET /v1/marketplace/gpu/{id} over every GPU
#   book+release      POST .../book then .../release, cycles per second
#   pricing           GET /v1/marketplace/pricing/{model} over the 50 models
# The response cache is off (GPU_MARKET_CACHE_TTL_MS=0) so every request reaches the database: with it
# on, a repeated query would measure the cache, not the catalogue. RSS comes from /proc/PID/status:
# idle (started, policies loaded, empty market) and the peak (VmHWM, reset per size) while seeding and
# measuring that size.
#
# BENCH_BEFORE_BIN=path also measures that binary (an earlier commit's release build) in the same run,
# each backend on a fresh database after the other, and prints its table and the ratio of this
# build's figures to it: a before/after comparison whose figures share the machine's state.
#
# Knobs: BENCH_BIN (measure this binary instead of building one), BENCH_BEFORE_BIN, SCALE_SIZES ("100 10000 100000"),
# SCALE_BACKENDS (sqlite, plus postgres with a URL), SCALE_MODELS (50), BENCH_DURATION (5), BENCH_WARMUP (1), BENCH_CONNECTIONS (32), BENCH_THREADS (2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -r -a SIZES <<<"${SCALE_SIZES:-100 10000 100000}"
MODELS="${SCALE_MODELS:-50}"
DURATION="${BENCH_DURATION:-5}"
WARMUP="${BENCH_WARMUP:-1}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
PAGE=20
PG_URL="${GPU_MARKET_BENCH_POSTGRES_URL:-}"

say() { printf '==> %s\n' "$*" >&2; }

for tool in wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/scale.sh needs $tool (apt-get install $tool)" >&2; exit 1; }
done
if [[ -n "$PG_URL" ]] && ! command -v psql >/dev/null 2>&1; then
    echo "bench/scale.sh needs psql for PostgreSQL (apt-get install postgresql-client)" >&2
    exit 1
fi

if [[ -n "${BENCH_BIN:-}" ]]; then
    BIN="$BENCH_BIN"
else
    say "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet --bin gpu-market)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gpu-market"
fi
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }
BEFORE_BIN="${BENCH_BEFORE_BIN:-}"
if [[ -n "$BEFORE_BIN" ]]; then
    [[ -x "$BEFORE_BIN" ]] || { echo "no binary at $BEFORE_BIN" >&2; exit 1; }
fi

WORK="$(mktemp -d -t gpu-market-scale.XXXXXX)"
SERVER_PID=""
SERVER_LOG=""
PG_DB=""
WRK_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$WRK_PID" ]]; then kill "$WRK_PID" 2>/dev/null || true; fi
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -n "$SERVER_LOG" && -f "$SERVER_LOG" ]]; then
        echo "---- last lines of $SERVER_LOG ----" >&2
        tail -n 40 "$SERVER_LOG" >&2
    fi
    if [[ -n "$PG_DB" ]]; then psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- wrk scripts ---------------------------------------------------------------------------------
# The market's shape, shared by the seeding and the queries: GPU i has model i mod 50 (10 families in
# 5 versions, so `model=RTX4090v3` names one model), one of 8 regions, one of 5 memory sizes, an
# asking price spread over 0.2..4.2, and "cuda" plus about a third of 7 other capabilities.
cat >"$WORK/common.lua" <<'LUA'
families = { "RTX 4090", "RTX 3090", "A100", "H100 SXM", "L40S", "A6000", "V100", "T4", "MI300X", "RTX 6000" }
regions = { "eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-northeast", "sa-east", "af-south" }
memories = { 16, 24, 48, 80, 141 }
capabilities = { "llm", "training", "fp8", "nvlink", "inference", "rendering", "tensorrt" }
model_count = tonumber(os.getenv("GM_MODELS"))

function model_name(m)
    return families[m % #families + 1] .. " v" .. (math.floor(m / #families) + 1)
end

-- The model as the aitbc client types it: no spaces.
function model_query(m)
    return (string.gsub(model_name(m), " ", ""))
end

-- Thread indexes, the GPU ids and the RESULT line.
dofile(os.getenv("GM_BENCH_WRK") .. "/common.lua")
LUA

# Registers GPUs GM_SEED_FROM .. GM_SEED_TO-1, thread t taking every GM_BENCH_THREADS-th from
# FROM + t, and writes the ids it gets to its own file. Once its share is sent it only reads /health;
# the script stops wrk when every id has arrived.
cat >"$WORK/seed.lua" <<'LUA'
dofile(os.getenv("GM_BENCH_COMMON"))
local next_index, stop_at, step, out
failed = 0
local headers = { ["Content-Type"] = "application/json", ["X-Api-Key"] = "", ["X-Miner-ID"] = "default" }

function init(args)
    step = tonumber(os.getenv("GM_BENCH_THREADS"))
    next_index = tonumber(os.getenv("GM_SEED_FROM")) + thread_index
    -- wrk calls request() once on the first thread's script to check it before any connection
    -- opens (script_verify_request): that call must not use up a GPU.
    if thread_index == 0 then next_index = next_index - step end
    stop_at = tonumber(os.getenv("GM_SEED_TO"))
    out = io.open(os.getenv("GM_SEED_DIR") .. "/ids." .. os.getenv("GM_SEED_FROM") .. "." .. thread_index, "w")
    out:setvbuf("line")
end

local function gpu(i)
    local caps = { '"cuda"' }
    for j, name in ipairs(capabilities) do
        if math.floor(i * (j + 2) / 7) % 3 == 0 then table.insert(caps, '"' .. name .. '"') end
    end
    return string.format('{"gpu": {"name": "%s", "memory_gb": %d, "cuda_cores": 16384, "compute_capability": "8.9", '
        .. '"price_per_hour": %.3f, "region": "%s", "cuda_version": "12.4", "capabilities": [%s], '
        .. '"description": "scale node %d"}}',
        model_name(i % model_count), memories[math.floor(i / 7) % #memories + 1], 0.2 + (i * 7919 % 4000) / 1000,
        regions[math.floor(i / 3) % #regions + 1], table.concat(caps, ", "), i)
end

function request()
    if next_index < stop_at then
        local i = next_index
        next_index = next_index + step
        return wrk.format("POST", "/v1/marketplace/gpu/register", headers, gpu(i))
    end
    return wrk.format("GET", "/health")
end

function response(status, headers, body)
    if status == 201 then
        local id = string.match(body, '"gpu_id":"([^"]+)"')
        if id then out:write(id, "\n") else failed = failed + 1 end
    elseif status ~= 200 then
        failed = failed + 1
    end
end
LUA

# One list query per request; the value of its filter changes from request to request.
cat >"$WORK/list.lua" <<'LUA'
dofile(os.getenv("GM_BENCH_COMMON"))
local kind, page, serial = os.getenv("GM_LIST"), os.getenv("GM_PAGE"), 0
local prices = { "0.5", "1", "2", "3" }
local memory = { "48", "80" }

function request()
    serial = serial + 1
    local query
    if kind == "all" then query = ""
    elseif kind == "model" then query = "&model=" .. model_query(serial % model_count)
    elseif kind == "memory" then query = "&memory_min=" .. memory[serial % #memory + 1]
    elseif kind == "price" then query = "&price_max=" .. prices[serial % #prices + 1]
    elseif kind == "region" then query = "&region=" .. regions[serial % #regions + 1]
    elseif kind == "capability" then query = "&capability=" .. capabilities[serial % #capabilities + 1]
    elseif kind == "sort" then query = "&sort=price"
    end
    return wrk.format("GET", "/v1/marketplace/gpu/list?limit=" .. page .. query)
end
LUA

cat >"$WORK/pricing.lua" <<'LUA'
dofile(os.getenv("GM_BENCH_COMMON"))
local serial = 0
function init(args) serial = thread_index * 7 end
function request()
    serial = serial + 1
    return wrk.format("GET", "/v1/marketplace/pricing/" .. model_query(serial % model_count))
end
LUA

cat >"$WORK/details.lua" <<'LUA'
dofile(os.getenv("GM_BENCH_COMMON"))
local ids, cursor
function init(args)
    ids = load_ids()
    cursor = (thread_index * 7919) % #ids
end
function request()
    -- a stride prime to any size visits every GPU, not a cached neighbourhood
    cursor = (cursor + 104729) % #ids
    return wrk.format("GET", "/v1/marketplace/gpu/" .. ids[cursor + 1])
end
LUA

# Book+release: each thread owns a slice of the GPUs and tracks each one's state; the action travels
# in X-Request-ID, which the service echoes. Booked GPUs are released first, so only the GPUs in flight
# are ever booked; one found booked (409: left so by an earlier run's requests in flight) is released
# and counted as `leftover`, not as a failure.
cat >"$WORK/cycle.lua" <<'LUA'
dofile(os.getenv("GM_BENCH_COMMON"))
local mine, state, cursor, serial = {}, {}, 0, 0
local to_release, first, last = {}, 1, 0
cycles, failed, leftover = 0, 0, 0
local FREE, BUSY = 0, 1
local book_headers = { ["Content-Type"] = "application/json" }

function init(args)
    local step = tonumber(os.getenv("GM_BENCH_THREADS"))
    for i, id in ipairs(load_ids()) do
        if (i - 1) % step == thread_index then
            table.insert(mine, id)
            state[#mine] = FREE
        end
    end
end

function request()
    serial = serial + 1
    if first <= last then
        local index = to_release[first]
        to_release[first] = nil
        first = first + 1
        return wrk.format("POST", "/v1/marketplace/gpu/" .. mine[index] .. "/release",
            { ["X-Request-ID"] = "r-" .. index .. "-" .. serial })
    end
    for _ = 1, #mine do
        cursor = cursor % #mine + 1
        if state[cursor] == FREE then
            state[cursor] = BUSY
            local id = mine[cursor]
            book_headers["X-Request-ID"] = "b-" .. cursor .. "-" .. serial
            return wrk.format("POST", "/v1/marketplace/gpu/" .. id .. "/book", book_headers,
                '{"gpu_id":"' .. id .. '","duration_hours":1}')
        end
    end
    return wrk.format("GET", "/health")
end

function response(status, headers, body)
    local rid = headers["x-request-id"] or headers["X-Request-ID"] or ""
    local action, index = string.match(rid, "^(%a)%-(%d+)%-")
    if not action then return end
    index = tonumber(index)
    if action == "b" and (status == 201 or status == 409) then
        if status == 409 then leftover = leftover + 1 end
        last = last + 1
        to_release[last] = index
    else
        state[index] = FREE
        if action == "r" and status == 200 then cycles = cycles + 1 else failed = failed + 1 end
    end
end
LUA

# ---- measuring -----------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)); }

declare -A RESULT

WRK_ENV=(GM_BENCH_WRK="$ROOT/bench/wrk" GM_BENCH_COMMON="$WORK/common.lua" GM_BENCH_IDS="$WORK/ids" GM_BENCH_THREADS="$THREADS"
    GM_MODELS="$MODELS" GM_PAGE="$PAGE")
wrk_env() { env "${WRK_ENV[@]}" "$@"; }

field() { sed -E "s/.* $1=([0-9]+).*/\\1/" <<<" $2"; }

status_kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$SERVER_PID/status"; }

# measure backend size scenario script [VAR=value...]: stores req/s (cycles/s for the cycle), p99 ms
# and the mean response size under RESULT[backend,size,scenario,*].
measure() {
    local backend="$1" size="$2" scenario="$3" script="$4"
    shift 4
    wrk_env "$@" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$script" "$BASE" >/dev/null 2>&1 || true
    local out line
    out="$(wrk_env "$@" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$script" "$BASE")"
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "gpu-market ($backend) died during $scenario" >&2; exit 1; }
    line="$(grep '^RESULT' <<<"$out")" || { echo "$out" >&2; echo "wrk gave no RESULT" >&2; exit 1; }
    local requests duration p99 non2xx errors cycles failed bytes
    requests="$(field requests "$line")"
    duration="$(field duration_us "$line")"
    p99="$(field p99_us "$line")"
    non2xx="$(field non2xx "$line")"
    errors="$(field socket_errors "$line")"
    cycles="$(field cycles "$line")"
    failed="$(field failed "$line")"
    bytes="$(field bytes "$line")"
    local count="$requests"
    [[ "$scenario" == cycle ]] && count="$cycles"
    local key="$backend,$size,$scenario"
    RESULT["$key,rate"]="$(awk -v n="$count" -v d="$duration" 'BEGIN { printf "%.0f", n / (d / 1e6) }')"
    RESULT["$key,p99"]="$(awk -v p="$p99" 'BEGIN { printf "%.1f", p / 1000 }')"
    RESULT["$key,kb"]="$(awk -v b="$bytes" -v n="$requests" 'BEGIN { if (n > 0) printf "%.1f", b / n / 1024; else print "-" }')"
    local problems=""
    if ((non2xx + errors + failed > 0)); then
        problems=" ($non2xx non-2xx, $errors socket errors, $failed failed book/release)"
        RESULT["$key,note"]="$problems"
    fi
    say "$backend $size $scenario: ${RESULT["$key,rate"]}/s, p99 ${RESULT["$key,p99"]} ms, ${RESULT["$key,kb"]} KiB/answer$problems"
}

# seed FROM TO: registers GPUs FROM..TO-1 through the API; appends their ids to $WORK/ids.
seed() {
    local from="$1" to="$2" want=$(($2 - $1))
    mkdir -p "$WORK/seed"
    # env execs wrk, so $! is wrk itself and can be stopped.
    env "${WRK_ENV[@]}" GM_SEED_DIR="$WORK/seed" GM_SEED_FROM="$from" GM_SEED_TO="$to" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d3600s --timeout 10s -s "$WORK/seed.lua" "$BASE" >"$WORK/seed.out" 2>&1 &
    WRK_PID=$!
    local have=0 last=-1 still=0
    while ((have < want)); do
        sleep 0.5
        have="$(cat "$WORK/seed"/ids."$from".* 2>/dev/null | wc -l)"
        if ((have == last)); then still=$((still + 1)); else still=0; last="$have"; fi
        if ((still > 40)); then echo "seeding stalled at $have of $want GPUs" >&2; break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "gpu-market died while seeding" >&2; exit 1; }
    done
    kill "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
    WRK_PID=""
    cat "$WORK/seed"/ids."$from".* >>"$WORK/ids"
    ((have >= want)) || { cat "$WORK/seed.out" >&2; exit 1; }
}

metric() { curl -sf "$BASE/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }

bench_backend() { # name database_url binary
    local backend="$1" database_url="$2" bin="$3"
    local port
    port="$(free_port)"
    BASE="http://127.0.0.1:$port"
    mkdir -p "$WORK/$backend/policies"
    cp "$ROOT"/policies/policies.toml "$ROOT"/policies/*.wasm "$WORK/$backend/policies/"
    say "starting gpu-market on $backend ($BASE)"
    SERVER_LOG="$WORK/$backend/server.log"
    GPU_MARKET_LOG=warn RUST_LOG=warn GPU_MARKET_CACHE_TTL_MS=0 \
        "$bin" serve --bind "127.0.0.1:$port" --database-url "$database_url" \
        --policies "$WORK/$backend/policies" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        curl -sf "$BASE/health" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
        sleep 0.1
    done
    curl -sf "$BASE/health" >/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
    sleep 1
    RESULT["$backend,rss_idle"]="$(($(status_kib VmRSS) / 1024))"
    say "$backend idle RSS: ${RESULT["$backend,rss_idle"]} MB"

    : >"$WORK/ids"
    local seeded=0 size
    for size in "${SIZES[@]}"; do
        # The peak of this size alone (writing 5 to clear_refs resets VmHWM to the current RSS).
        echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
        local started=$SECONDS
        say "$backend: registering GPUs $seeded..$((size - 1)) through the API"
        seed "$seeded" "$size"
        seeded="$size"
        RESULT["$backend,$size,seed"]="$((SECONDS - started))"
        say "$backend: $size GPUs registered in ${RESULT["$backend,$size,seed"]} s; repricing the catalogue"
        if [[ "$backend" == postgres ]]; then
            # Fresh planner statistics after the bulk load, as autovacuum would gather within a minute
            # (this bench's server may run without it): on the statistics of a 100-GPU table
            # PostgreSQL plans the capability filter as a scan of every GPU.
            psql "$database_url" -q -c ANALYZE >/dev/null
        fi
        curl -sf -m 600 -X POST -H 'X-Api-Key: ' "$BASE/v1/marketplace/sync-offers" >/dev/null
        RESULT["$backend,$size,refresh"]="$(metric gpu_market_price_refresh_seconds)"
        RESULT["$backend,$size,refresh_gpus"]="$(metric gpu_market_price_refresh_gpus)"
        say "$backend: full refresh of ${RESULT["$backend,$size,refresh_gpus"]} GPUs took ${RESULT["$backend,$size,refresh"]} s"

        for list in all model memory price region capability sort; do
            measure "$backend" "$size" "list_$list" "$WORK/list.lua" GM_LIST="$list"
        done
        measure "$backend" "$size" details "$WORK/details.lua"
        measure "$backend" "$size" cycle "$WORK/cycle.lua"
        measure "$backend" "$size" pricing "$WORK/pricing.lua"
        RESULT["$backend,$size,rss_peak"]="$(($(status_kib VmHWM) / 1024))"
        RESULT["$backend,$size,rss"]="$(($(status_kib VmRSS) / 1024))"
    done

    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# Each backend is measured with this build and, with BENCH_BEFORE_BIN, the earlier one ("<backend>
# before"), one after the other on fresh databases.
BACKENDS=()
postgres_url_for() { # database name
    python3 - "$PG_URL" "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
print(urlunsplit((parts.scheme, parts.netloc, "/" + sys.argv[2], parts.query, parts.fragment)))
PY
}
run_backend() { # name kind binary
    local name="$1" kind="$2" bin="$3"
    mkdir -p "$WORK/$name"
    if [[ "$kind" == sqlite ]]; then
        bench_backend "$name" "sqlite://$WORK/$name/scale.db?mode=rwc" "$bin"
    else
        PG_DB="gm_scale_$(date +%s)_$$"
        psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
        bench_backend "$name" "$(postgres_url_for "$PG_DB")" "$bin"
        psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
    BACKENDS+=("$name")
}
# SCALE_BACKENDS="postgres" measures one backend alone (default: SQLite, and PostgreSQL with a URL).
read -r -a KINDS <<<"${SCALE_BACKENDS:-sqlite${PG_URL:+ postgres}}"
for kind in "${KINDS[@]}"; do
    case "$kind" in
    sqlite) ;;
    postgres) [[ -n "$PG_URL" ]] || { echo "SCALE_BACKENDS has postgres: set GPU_MARKET_BENCH_POSTGRES_URL" >&2; exit 2; } ;;
    *) echo "SCALE_BACKENDS: unknown backend $kind (sqlite, postgres)" >&2; exit 2 ;;
    esac
done
for kind in "${KINDS[@]}"; do
    [[ -n "$BEFORE_BIN" ]] && run_backend "$kind-before" "$kind" "$BEFORE_BIN"
    run_backend "$kind" "$kind" "$BIN"
done

# ---- report ----------------------------------------------------------------------------------------
FIRST="${SIZES[0]}"
LAST="${SIZES[${#SIZES[@]} - 1]}"
echo
echo "gpu-market scale benchmark: ${SIZES[*]} GPUs over $MODELS models, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s (warm-up ${WARMUP}s), lists limit=$PAGE, response cache off, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
declare -A LABEL=(
    [list_all]="list (no filter)" [list_model]="list model=" [list_memory]="list memory_min="
    [list_price]="list price_max=" [list_region]="list region=" [list_capability]="list capability="
    [list_sort]="list sort=price" [details]="details" [cycle]="book+release (cycles)" [pricing]="pricing/{model}"
)
SCENARIOS=(list_all list_model list_memory list_price list_region list_capability list_sort details cycle pricing)
for b in "${BACKENDS[@]}"; do
    echo
    printf '%-24s' "$b"
    for size in "${SIZES[@]}"; do printf '%24s' "$size GPUs: /s  p99 ms"; done
    # The growth column compares the largest size with the smallest: with one size there is none.
    if ((${#SIZES[@]} > 1)); then printf '%14s\n' "/s $LAST:$FIRST"; else echo; fi
    for scenario in "${SCENARIOS[@]}"; do
        printf '%-24s' "${LABEL[$scenario]}"
        for size in "${SIZES[@]}"; do
            printf '%16s %7s' "${RESULT["$b,$size,$scenario,rate"]}" "${RESULT["$b,$size,$scenario,p99"]}"
        done
        if ((${#SIZES[@]} > 1)); then
            printf '%14s\n' "$(awk -v a="${RESULT["$b,$LAST,$scenario,rate"]}" -v f="${RESULT["$b,$FIRST,$scenario,rate"]}" \
                'BEGIN { if (f > 0) printf "%.2f", a / f; else print "-" }')"
        else
            echo
        fi
    done
    printf '%-24s' "full refresh s (GPUs/s)"
    for size in "${SIZES[@]}"; do
        printf '%s' "$(awk -v s="${RESULT["$b,$size,refresh"]}" -v n="${RESULT["$b,$size,refresh_gpus"]}" \
            'BEGIN { printf "%24s", sprintf("%.3f (%.0f)", s, (s > 0 ? n / s : 0)) }')"
    done
    echo
    printf '%-24s' "seeding s (API)"
    for size in "${SIZES[@]}"; do printf '%24s' "${RESULT["$b,$size,seed"]}"; done
    echo
    printf '%-24s' "RSS MB now / peak"
    for size in "${SIZES[@]}"; do printf '%24s' "${RESULT["$b,$size,rss"]} / ${RESULT["$b,$size,rss_peak"]}"; done
    echo
    echo "RSS idle (three default policies, empty market): ${RESULT["$b,rss_idle"]} MB (target <= 64); peak at $LAST GPUs: ${RESULT["$b,$LAST,rss_peak"]} MB (target <= 256)"
done
if [[ -n "$PG_URL" ]]; then
    echo
    printf '%-24s%22s\n' "postgres/sqlite /s" "at $LAST GPUs"
    for scenario in "${SCENARIOS[@]}"; do
        printf '%-24s%22s\n' "${LABEL[$scenario]}" "$(awk -v p="${RESULT["postgres,$LAST,$scenario,rate"]}" \
            -v s="${RESULT["sqlite,$LAST,$scenario,rate"]}" 'BEGIN { if (s > 0) printf "%.2f", p / s; else print "-" }')"
    done
fi
if [[ -n "$BEFORE_BIN" ]]; then
    for kind in "${KINDS[@]}"; do
        echo
        printf '%-24s' "$kind after/before /s"
        for size in "${SIZES[@]}"; do printf '%12s' "$size GPUs"; done
        echo
        for scenario in "${SCENARIOS[@]}"; do
            printf '%-24s' "${LABEL[$scenario]}"
            for size in "${SIZES[@]}"; do
                printf '%12s' "$(awk -v a="${RESULT["$kind,$size,$scenario,rate"]}" \
                    -v b="${RESULT["$kind-before,$size,$scenario,rate"]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
            done
            echo
        done
    done
fi
echo
echo "targets: every filtered list p99 <= 20 ms, and its /s at $LAST GPUs within 2x of $FIRST GPUs (ratio >= 0.50)"
for b in "${BACKENDS[@]}"; do
    for size in "${SIZES[@]}"; do
        for scenario in "${SCENARIOS[@]}"; do
            note="${RESULT["$b,$size,$scenario,note"]:-}"
            [[ -n "$note" ]] && echo "  $b $size ${LABEL[$scenario]}:$note"
        done
    done
done
echo "mean answer KiB at $LAST GPUs:$(for s in "${SCENARIOS[@]}"; do printf ' %s %s;' "$s" "${RESULT["sqlite,$LAST,$s,kb"]}"; done)"
