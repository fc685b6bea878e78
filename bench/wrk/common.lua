-- Shared by bench/load.sh, bench/ab.sh and bench/scale.sh (whose own common.lua adds the market's
-- shape): each thread gets an index (setup), reads the GPU ids from $GM_BENCH_IDS, and done() prints one
-- machine-readable line: requests, duration, p99 latency, non-2xx answers and (for the cycle) cycles.
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

-- `leftover`: answers a scenario expected and counts apart (bench/scale.sh's cycle: a GPU found booked
-- by an earlier run's requests), not as non-2xx.
function done(summary, latency, requests)
    local cycles, failed, leftover = 0, 0, 0
    for _, thread in ipairs(threads) do
        cycles = cycles + (thread:get("cycles") or 0)
        failed = failed + (thread:get("failed") or 0)
        leftover = leftover + (thread:get("leftover") or 0)
    end
    io.write(string.format("RESULT requests=%d duration_us=%d p99_us=%d non2xx=%d socket_errors=%d cycles=%d failed=%d leftover=%d bytes=%d\n",
        summary.requests, summary.duration, latency:percentile(99.0), summary.errors.status - leftover,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        cycles, failed, leftover, summary.bytes))
end
