-- wrk script: GET a portal page with a session cookie (OUTHOOK_BENCH_COOKIE).
wrk.headers["Cookie"] = os.getenv("OUTHOOK_BENCH_COOKIE")
