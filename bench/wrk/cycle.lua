-- Book+release: each thread owns a disjoint slice of the GPUs and tracks each one's state
-- (free -> booking -> booked -> releasing -> free). The action and GPU travel in X-Request-ID, which the
-- service echoes, so every answer is matched to its request whatever the connection. A cycle is one
-- successful release (its booking succeeded before it).
dofile(os.getenv("GM_BENCH_COMMON"))
local mine, state, cursor, serial = {}, {}, 0, 0
cycles, failed = 0, 0
local FREE, BOOKING, BOOKED, RELEASING = 0, 1, 2, 3
local book_headers = { ["Content-Type"] = "application/json" }

function init(args)
    local ids = load_ids()
    local thread_total = tonumber(os.getenv("GM_BENCH_THREADS"))
    for i, id in ipairs(ids) do
        if (i - 1) % thread_total == thread_index then
            table.insert(mine, id)
            state[#mine] = FREE
        end
    end
end

function request()
    for _ = 1, #mine do
        cursor = cursor % #mine + 1
        local s = state[cursor]
        if s == FREE or s == BOOKED then
            serial = serial + 1
            local id = mine[cursor]
            if s == FREE then
                state[cursor] = BOOKING
                book_headers["X-Request-ID"] = "b-" .. cursor .. "-" .. serial
                return wrk.format("POST", "/v1/marketplace/gpu/" .. id .. "/book", book_headers,
                    '{"gpu_id":"' .. id .. '","duration_hours":1}')
            else
                state[cursor] = RELEASING
                return wrk.format("POST", "/v1/marketplace/gpu/" .. id .. "/release",
                    { ["X-Request-ID"] = "r-" .. cursor .. "-" .. serial })
            end
        end
    end
    -- every GPU of this thread is in flight (more connections than GPUs): read something harmless
    return wrk.format("GET", "/health")
end

function response(status, headers, body)
    local rid = headers["x-request-id"] or headers["X-Request-ID"] or ""
    local action, index = string.match(rid, "^(%a)%-(%d+)%-")
    if not action then return end
    index = tonumber(index)
    if action == "b" then
        if status == 201 then state[index] = BOOKED else state[index] = FREE; failed = failed + 1 end
    else
        state[index] = FREE
        if status == 200 then cycles = cycles + 1 else failed = failed + 1 end
    end
end
