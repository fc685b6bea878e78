#!/usr/bin/env bash
# Fuzzes the running server against its own OpenAPI document with schemathesis (every check, the
# stateful links too), once per role: admin, client, miner and no key. Fails on any finding.
#
#   tests/schemathesis/run.sh [DATABASE_URL]     # default: a fresh SQLite file
#
# Needs a built binary (cargo build) and schemathesis (pip install schemathesis).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/gpu-market"
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run cargo build first" >&2; exit 1; }
WORK="$(mktemp -d -t gpu-market-schemathesis.XXXXXX)"
DATABASE_URL="${1:-sqlite://$WORK/market.db}"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/gpu-market.toml" <<TOML
log = "warn"
# The fuzzer writes far faster than any client may: rate limits are tested in tests/limits.rs.
[rate_limit]
writes_per_second = 0
[[keys]]
key = "st-admin-key"
principal = "admin"
roles = ["admin"]
[[keys]]
key = "st-client-key"
principal = "client"
roles = ["client"]
[[keys]]
key = "st-miner-key"
principal = "miner"
roles = ["miner"]
TOML
mkdir "$WORK/policies"
cp "$ROOT"/policies/* "$WORK/policies/"
"$BIN" serve --config "$WORK/gpu-market.toml" --bind "127.0.0.1:$PORT" --database-url "$DATABASE_URL" \
  --policies "$WORK/policies" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fs "$BASE/health" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$BASE/health" >/dev/null || { cat "$WORK/server.log"; exit 1; }

# A market to find: GPUs of a few models, one booked, one review.
for model in "RTX 4090" "A100" "H100"; do
  curl -fs -X POST "$BASE/v1/marketplace/gpu/register" -H "X-Api-Key: st-miner-key" -H 'Content-Type: application/json' \
    -d "{\"gpu\": {\"name\": \"$model\", \"memory_gb\": 24, \"price_per_hour\": 1.5, \"capabilities\": [\"llama2-7b\"]}}" >/dev/null
done

export PYTHONPATH="$ROOT/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks
status=0
for key in st-admin-key st-client-key st-miner-key none; do
  echo "== schemathesis as ${key}"
  header=()
  [[ "$key" != none ]] && header=(-H "X-Api-Key: $key")
  if ! schemathesis --config-file "$ROOT/tests/schemathesis/schemathesis.toml" run "$BASE/openapi.json" \
      --checks all "${header[@]}" --workers 1 --no-color; then
    status=1
  fi
done
if grep -n "panicked" "$WORK/server.log"; then status=1; fi
exit $status
