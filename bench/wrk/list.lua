-- GET the catalogue's first page.
dofile(os.getenv("GM_BENCH_COMMON"))
function request()
    return wrk.format("GET", "/v1/marketplace/gpu/list")
end
