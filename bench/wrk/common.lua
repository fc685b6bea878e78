-- Shared by bench/load.sh and bench/ab.sh: each thread gets an index (setup), reads the GPU ids from
-- $GM_BENCH_IDS, and done() prints one machine-readable line: requests, duration, p99 latency, non-2xx
-- answers and (for the cycle) cycles.
local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("thread_index", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

function load_ids()
    local ids = {}
    for line in io.lines(os.getenv("GM_BENCH_IDS")) do
        if #line > 0 then table.insert(ids, line) end
    end
    return ids
end

function done(summary, latency, requests)
    local cycles, failed = 0, 0
    for _, thread in ipairs(threads) do
        cycles = cycles + (thread:get("cycles") or 0)
        failed = failed + (thread:get("failed") or 0)
    end
    io.write(string.format("RESULT requests=%d duration_us=%d p99_us=%d non2xx=%d socket_errors=%d cycles=%d failed=%d\n",
        summary.requests, summary.duration, latency:percentile(99.0), summary.errors.status,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        cycles, failed))
end
