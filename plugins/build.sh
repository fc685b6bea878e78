#!/usr/bin/env bash
# Builds the default policies and copies them into ../policies/.
#
# Each guest is compiled for wasm32-unknown-unknown (not wasm32-wasip2: Rust's std for WASI imports a
# dozen WASI interfaces even when unused) and wrapped into a component with `wasm-tools component new`,
# so the result imports nothing and loads into the host's empty linker.
#
# Needs: rustup target wasm32-unknown-unknown, wasm-tools (cargo install wasm-tools --locked).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../policies}"
target_dir="$here/target"

command -v wasm-tools >/dev/null || { echo "wasm-tools not found: cargo install wasm-tools --locked" >&2; exit 1; }

CARGO_TARGET_DIR="$target_dir" cargo build --manifest-path "$here/Cargo.toml" --release \
    --target wasm32-unknown-unknown --locked

mkdir -p "$out"
for name in pricing-demand pricing-scarcity booking-timeout-grace review-moderation-basic; do
    core="$target_dir/wasm32-unknown-unknown/release/${name//-/_}.wasm"
    tmp="$out/.${name}.wasm.tmp"
    wasm-tools component new "$core" -o "$tmp"
    wasm-tools validate --features component-model "$tmp"
    imports="$(wasm-tools component wit "$tmp" | grep -c '^ *import ' || true)"
    if [ "$imports" != "0" ]; then
        echo "$name: the component imports something; the host grants nothing" >&2
        wasm-tools component wit "$tmp" >&2
        rm -f "$tmp"
        exit 1
    fi
    # Rename into place so a running service's watcher never sees a half-written module.
    mv "$tmp" "$out/$name.wasm"
    echo "built $out/$name.wasm ($(wc -c <"$out/$name.wasm") bytes)"
done
