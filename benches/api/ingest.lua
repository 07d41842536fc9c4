-- wrk script: POST /v1/messages with a 1 KiB payload, as an admin.
-- The token comes from the environment (OUTHOOK_BENCH_TOKEN).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("OUTHOOK_BENCH_TOKEN")
wrk.body = '{"event_type":"item.sold","owner":"' .. os.getenv("OUTHOOK_BENCH_OWNER") ..
  '","payload":{"type":"item.sold","data":{"item_id":"PART_00000001","shard":7,"pad":"' .. string.rep("x", 950) .. '"}}}'
