#!/usr/bin/env bash
# Builds the JavaScript policies into WebAssembly components that import nothing.
#
#   (cd plugins/js && npm ci)       # componentize-js and jco, pinned by package-lock.json
#
# package.json lists @bytecodealliance/preview2-shim because componentize-js 0.23.0 imports it without
# declaring it (it only worked when another package's copy happened to be hoisted).
#   plugins/js/build.sh [OUT_DIR]   # default: plugins/js/out; writes OUT_DIR/pricing-demand-js.wasm
#
# `-d stdio random clocks http fetch-event` leaves out every WASI feature of the embedded JS engine
# (console, Math.random, Date.now, fetch), so the component loads into the host's empty linker like the
# Rust policies (with them it would import 18 interfaces). Not `--aot`: it downloads a compiler.
# The components are 12+ MB and not committed; .ci/run builds them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/../wit"
out_dir="${1:-$here/out}"
componentize="$here/node_modules/.bin/componentize-js"

[ -x "$componentize" ] || { echo "componentize-js not installed: (cd $here && npm ci)" >&2; exit 1; }
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

# build SOURCE_DIR WORLD OUT_NAME
build() {
    local out="$out_dir/$3"
    local tmp="$out_dir/.$3.tmp"
    "$componentize" "$here/$1/pricing.js" --wit "$wit" --world-name "$2" \
        --disable stdio random clocks http fetch-event -o "$tmp" >/dev/null
    # The host refuses any import too; failing here names the cause at build time.
    local wit_text
    wit_text="$("$here/node_modules/.bin/jco" wit "$tmp")"
    if grep -q '^ *import ' <<<"$wit_text"; then
        echo "$3: the component imports something; the host grants nothing:" >&2
        grep '^ *import ' <<<"$wit_text" >&2
        rm -f "$tmp"
        exit 1
    fi
    # Rename into place so a running service's watcher never sees a half-written module.
    mv "$tmp" "$out"
    echo "built $out ($(wc -c <"$out") bytes)"
}

build pricing-demand pricing-policy pricing-demand-js.wasm
