-- wrk script: GET the path given to wrk, as an admin (OUTHOOK_BENCH_TOKEN).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("OUTHOOK_BENCH_TOKEN")
