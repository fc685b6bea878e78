-- GET one GPU after another by id.
dofile(os.getenv("GM_BENCH_COMMON"))
local ids, next_index
function init(args)
    ids = load_ids()
    next_index = (thread_index * 37) % #ids
end
function request()
    next_index = next_index % #ids + 1
    return wrk.format("GET", "/v1/marketplace/gpu/" .. ids[next_index])
end
