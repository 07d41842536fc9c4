-- wrk script: POST a 1 KiB JSON body, like the burst scenario's payloads.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"seq":1,"type":"item.sold","data":{"item_id":"PART_00000001","pad":"' .. string.rep("x", 950) .. '"}}'
