#!/usr/bin/env bash
# Sandbox containment figures (issue 11): for each hostile fixture, booking p99 and the server's peak
# RSS under 32 booking clients, first with the default modules, then with the hostile module loaded,
# all in one run. Prints figures; the assertions are those of tests/sandbox.rs.
#
#   bench/sandbox.sh                  # SQLite
#   GPU_MARKET_TEST_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/test bench/sandbox.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --test sandbox -- --test-threads=1 --nocapture 2>&1 | grep -o '\[sandbox\].*\|test result.*'
