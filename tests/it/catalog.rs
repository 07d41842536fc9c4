//! The event catalog and content filters, on every path an event takes:
//! the API, the CLI, the library and a plain `INSERT`.

use std::process::Command;

use outhook_dispatcher::{Enqueued, Event};
use outhook_testkit::receiver::Receiver;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{Server, cli};

/// Runs the CLI expecting failure; returns its stderr.
fn cli_fails(url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?} did not fail with 2");
    String::from_utf8(out.stderr).unwrap()
}

/// (filter, payload, whether it matches). Each operator, nested paths,
/// missing fields, wrong types, arrays, `and`, `or`, `not`.
const CASES: &[(&str, &str, bool)] = &[
    (r#"collection = "0xabc""#, r#"{"collection":"0xabc"}"#, true),
    (r#"collection = "0xabc""#, r#"{"collection":"0xdef"}"#, false),
    (r#"collection = "0xabc""#, r#"{"other":"0xabc"}"#, false),
    (r#"collection != "0xabc""#, r#"{"collection":"0xdef"}"#, true),
    (r#"collection != "0xabc""#, r#"{}"#, false),
    ("data.item.price >= 10", r#"{"data":{"item":{"price":10}}}"#, true),
    ("data.item.price >= 10", r#"{"data":{"item":{"price":9.5}}}"#, false),
    ("data.item.price >= 10", r#"{"data":{"item":{"price":"10"}}}"#, false),
    ("data.item.price >= 10", r#"{"data":{}}"#, false),
    ("data.item.price < 1e3", r#"{"data":{"item":{"price":999.99}}}"#, true),
    ("data.item.price > -1", r#"{"data":{"item":{"price":0}}}"#, true),
    ("data.item.price <= 0", r#"{"data":{"item":{"price":0.5}}}"#, false),
    (r#"status in ["paid", "shipped"]"#, r#"{"status":"shipped"}"#, true),
    (r#"status in ["paid", "shipped"]"#, r#"{"status":"draft"}"#, false),
    ("status in [1, 2]", r#"{"status":"1"}"#, false),
    ("exists data.buyer", r#"{"data":{"buyer":null}}"#, true),
    ("exists data.buyer", r#"{"data":{"seller":1}}"#, false),
    ("not exists data.buyer", r#"{"data":{}}"#, true),
    (
        r#"amount > 5 and currency = "EUR""#,
        r#"{"amount":6,"currency":"EUR"}"#,
        true,
    ),
    (
        r#"amount > 5 and currency = "EUR""#,
        r#"{"amount":6,"currency":"USD"}"#,
        false,
    ),
    ("amount > 5 or vip = true", r#"{"amount":1,"vip":true}"#, true),
    ("amount > 5 or vip = true", r#"{"amount":1,"vip":false}"#, false),
    (r#"not (status = "draft")"#, r#"{"status":"paid"}"#, true),
    (r#"not (status = "draft")"#, r#"{"status":"draft"}"#, false),
    (r#"not (status = "draft")"#, r#"{}"#, true),
    ("not (price >= 10)", r#"{"price":"10"}"#, true),
    ("not (price >= 10)", r#"{"price":12}"#, false),
    (r#"not (status in ["a", 1])"#, r#"{"status":true}"#, true),
    (r#"tags = "x""#, r#"{"tags":["a","x"]}"#, true),
    (r#"tags = "x""#, r#"{"tags":["a","b"]}"#, false),
    (r#""odd key".v = 1"#, r#"{"odd key":{"v":1}}"#, true),
    ("gone = null", r#"{"gone":null}"#, true),
    (r#"name = "Zoë \"Z\"""#, r#"{"name":"Zoë \"Z\""}"#, true),
    (r#"(a = 1 or b = 2) and c = 3"#, r#"{"b":2,"c":3}"#, true),
    (r#"(a = 1 or b = 2) and c = 3"#, r#"{"a":1,"c":4}"#, false),
    // Equality terms the fan-out looks endpoints up by (the filter's key):
    // the lookup must find what evaluation alone would.
    (r#"collection = "0xabc""#, r#"{"collection":["0xabc","0xabc"]}"#, true),
    ("data.shard = 1", r#"{"data":[{"shard":2},{"shard":1}]}"#, true),
    ("data.shard = 1", r#"{"data":{"shard":1.0}}"#, true),
    ("data.shard = 1", r#"{"data":{"shard":"1"}}"#, false),
    ("data.shard = 1", r#"{"data":{"shard":[[1]]}}"#, false),
    ("data.shard = 1 and n > 2", r#"{"data":{"shard":1},"n":3}"#, true),
    ("data.shard = 1 and n > 2", r#"{"data":{"shard":1},"n":2}"#, false),
    ("n > 2 and ok = true", r#"{"n":3,"ok":true}"#, true),
    (r#"status in ["paid"]"#, r#"{"status":"paid"}"#, true),
];

async fn deliveries_of(server: &Server, message_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(&server.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_filter_table_matches_alike_through_the_api_the_library_and_plain_sql() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();
    for (i, (filter, _, _)) in CASES.iter().enumerate() {
        let (status, body) = server
            .admin(
                Method::POST,
                "/v1/endpoints",
                Some(json!({"owner": format!("case{i}"), "url": receiver.url("/hook"),
                            "scheme": "standard-webhooks", "event_types": ["item.sold"], "filter": filter})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{filter}: {body}");
        assert_eq!(body["filter"], *filter);
    }
    for (i, (filter, payload, matches)) in CASES.iter().enumerate() {
        let owner = format!("case{i}");
        let want = i64::from(*matches);
        // The API.
        let (status, body) = server
            .admin(
                Method::POST,
                "/v1/messages",
                Some(json!({"event_type": "item.sold", "owner": owner,
                            "payload": serde_json::from_str::<Value>(payload).unwrap()})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["deliveries"], want, "API: {filter} on {payload}");
        // The library, in the caller's transaction.
        let mut tx = server.pool.begin().await.unwrap();
        let Enqueued::New(id) = outhook_dispatcher::enqueue(
            &mut *tx,
            &Event {
                event_type: "item.sold",
                payload,
                owner: Some(&owner),
                ..Event::default()
            },
        )
        .await
        .unwrap() else {
            panic!("not enqueued")
        };
        tx.commit().await.unwrap();
        assert_eq!(deliveries_of(&server, id).await, want, "library: {filter} on {payload}");
        // Plain SQL.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.sold', $1::json, $2) RETURNING id",
        )
        .bind(payload)
        .bind(&owner)
        .fetch_one(&server.pool)
        .await
        .unwrap();
        assert_eq!(deliveries_of(&server, id).await, want, "SQL: {filter} on {payload}");
        // An event of another type never matches, filter or not.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.listed', $1::json, $2) RETURNING id",
        )
        .bind(payload)
        .bind(&owner)
        .fetch_one(&server.pool)
        .await
        .unwrap();
        assert_eq!(deliveries_of(&server, id).await, 0);
    }
    // The API sent a hint for the cases whose filter is only its key (a
    // plain INSERT and the library send none): the same answers.
    let hinted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outhook.outbox WHERE owner LIKE 'case%' AND filter_hint_path IS NOT NULL",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert!(hinted >= 8, "only {hinted} API events carried a hint");
    // The equality cases were looked up by their key; without it, each
    // filter is evaluated on every event of its owner: the same answers.
    let keyed: i64 = sqlx::query_scalar(
        "UPDATE outhook.endpoint SET content_filter_key_path = NULL, content_filter_key_value = NULL
         WHERE content_filter_key_path IS NOT NULL RETURNING 1::int8",
    )
    .fetch_all(&server.pool)
    .await
    .unwrap()
    .iter()
    .sum();
    assert!(keyed >= 10, "only {keyed} filters had a key");
    for (i, (filter, payload, matches)) in CASES.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.sold', $1::json, $2) RETURNING id",
        )
        .bind(payload)
        .bind(format!("case{i}"))
        .fetch_one(&server.pool)
        .await
        .unwrap();
        assert_eq!(
            deliveries_of(&server, id).await,
            i64::from(*matches),
            "SQL, no key: {filter} on {payload}"
        );
    }
}

/// One owner with an endpoint of every kind the fan-out finds apart: no
/// filter, keyed on one path, keyed on a second path, keyed with an `and`,
/// and a filter without a key. (name, filter)
const MIXED: &[(&str, Option<&str>)] = &[
    ("plain", None),
    ("coll-a", Some(r#"collection = "0xa""#)),
    ("coll-b", Some(r#"collection = "0xb""#)),
    ("shard-1", Some("data.shard = 1")),
    ("shard-2-big", Some("data.shard = 2 and amount >= 10")),
    ("unkeyed", Some("amount > 100 or vip = true")),
];

/// (payload, the MIXED endpoints it goes to).
const MIXED_EVENTS: &[(&str, &[&str])] = &[
    (r#"{}"#, &["plain"]),
    (r#"{"collection":"0xa"}"#, &["plain", "coll-a"]),
    (r#"{"collection":["0xa","0xb","0xa"]}"#, &["plain", "coll-a", "coll-b"]),
    (r#"{"collection":[]}"#, &["plain"]),
    (
        r#"{"collection":"0xb","data":{"shard":1}}"#,
        &["plain", "coll-b", "shard-1"],
    ),
    (
        r#"{"data":[{"shard":1},{"shard":2}],"amount":10}"#,
        &["plain", "shard-1", "shard-2-big"],
    ),
    (r#"{"data":{"shard":2},"amount":9}"#, &["plain"]),
    (
        r#"{"data":{"shard":2},"amount":101}"#,
        &["plain", "shard-2-big", "unkeyed"],
    ),
    (r#"{"collection":"0xc","vip":true}"#, &["plain", "unkeyed"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_with_endpoints_of_every_kind_gets_each_event_to_exactly_those_that_match() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();
    let mut ids = std::collections::HashMap::new();
    for (name, filter) in MIXED {
        let mut body = json!({"owner": "mixed", "url": receiver.url("/hook"), "scheme": "standard-webhooks",
                              "description": name});
        if let Some(f) = filter {
            body["filter"] = json!(f);
        }
        let (status, body) = server.admin(Method::POST, "/v1/endpoints", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        ids.insert(body["id"].as_str().unwrap().to_owned(), *name);
    }
    let keyed: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT content_filter_key_path) FROM outhook.endpoint WHERE owner = 'mixed'",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(keyed, 2, "the filters should have two key paths");
    let names_of = |rows: Vec<String>| {
        let mut names: Vec<&str> = rows.iter().map(|id| ids[id]).collect();
        names.sort_unstable();
        names
    };
    fn want_of<'a>(want: &[&'a str]) -> Vec<&'a str> {
        let mut want = want.to_vec();
        want.sort_unstable();
        want
    }
    // Every event in one statement, as a batch is; again once an endpoint
    // is ordered (the fan-out's other path); and each alone through the API.
    let payloads: Vec<&str> = MIXED_EVENTS.iter().map(|(p, _)| *p).collect();
    for round in ["plain fan-out", "with an ordered endpoint"] {
        if round != "plain fan-out" {
            let ordered =
                sqlx::query("UPDATE outhook.endpoint SET fifo = true WHERE owner = 'mixed' AND description = 'coll-a'")
                    .execute(&server.pool)
                    .await
                    .unwrap();
            assert_eq!(ordered.rows_affected(), 1);
        }
        let batch: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO outhook.outbox (event_type, payload, owner)
         SELECT 'item.sold', p::json, 'mixed' FROM unnest($1::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n
         RETURNING id",
        )
        .bind(&payloads)
        .fetch_all(&server.pool)
        .await
        .unwrap();
        assert_eq!(batch.len(), MIXED_EVENTS.len());
        for (id, (payload, want)) in batch.iter().zip(MIXED_EVENTS) {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT d.endpoint_id::text FROM outhook.delivery d JOIN outhook.outbox o ON o.id = d.message_id
             WHERE o.id = $1",
            )
            .bind(id)
            .fetch_all(&server.pool)
            .await
            .unwrap();
            assert_eq!(names_of(rows), want_of(want), "SQL batch, {round}: {payload}");
        }
    }
    for (payload, want) in MIXED_EVENTS {
        let (status, body) = server
            .admin(
                Method::POST,
                "/v1/messages",
                Some(json!({"event_type": "item.sold", "owner": "mixed",
                            "payload": serde_json::from_str::<Value>(payload).unwrap()})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["deliveries"], want.len(), "API: {payload}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_set_changed_and_removed_and_a_bad_one_is_refused_with_its_column() {
    let server = Server::start(&[]).await;
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": "acme", "url": "http://127.0.0.1:9/h", "scheme": "standard-webhooks",
                        "filter": "amount > \"ten\""}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "urn:outhook:problem:invalid-filter");
    assert!(body["detail"].as_str().unwrap().contains("column 10"), "{body}");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outhook.endpoint")
            .fetch_one(&server.pool)
            .await
            .unwrap(),
        0
    );

    let out = cli(
        &server.url,
        &[
            "--allow-network",
            "127.0.0.0/8",
            "endpoint",
            "add",
            "--owner",
            "acme",
            "--url",
            "http://127.0.0.1:9/h",
            "--scheme",
            "standard-webhooks",
            "--filter",
            "collection = \"0xa\"",
        ],
    );
    let id = out.lines().next().unwrap().trim_start_matches("endpoint ").to_owned();
    let send = |payload: &'static str| {
        let pool = server.pool.clone();
        async move {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('x', $1::json, 'acme') RETURNING id",
            )
            .bind(payload)
            .fetch_one(&pool)
            .await
            .unwrap();
            id
        }
    };
    let a = send(r#"{"collection":"0xa"}"#).await;
    let b = send(r#"{"collection":"0xb"}"#).await;
    assert_eq!(
        (deliveries_of(&server, a).await, deliveries_of(&server, b).await),
        (1, 0)
    );

    let stderr = cli_fails(
        &server.url,
        &["endpoint", "update", &id, "--filter", "collection = "],
        None,
    );
    assert!(stderr.contains("filter: at column 14"), "{stderr}");
    let (status, body) = server
        .admin(
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            Some(json!({"filter": "collection = \"0xb\""})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b = send(r#"{"collection":"0xb"}"#).await;
    assert_eq!(deliveries_of(&server, b).await, 1);
    // A plain UPDATE of the predicate alone drops the key the API set with
    // the old one, so the key cannot hide a match of the new filter.
    let key =
        "SELECT content_filter_key_path, content_filter_key_value::text FROM outhook.endpoint WHERE id = $1::uuid";
    let before: (Option<String>, Option<String>) = sqlx::query_as(key).bind(&id).fetch_one(&server.pool).await.unwrap();
    assert_eq!(
        before,
        (Some(r#"$."collection"[*]"#.to_owned()), Some(r#""0xb""#.to_owned()))
    );
    sqlx::query(
        r#"UPDATE outhook.endpoint SET content_filter = 'collection = "0xc"',
                  content_filter_path = '$."collection" == "0xc"' WHERE id = $1::uuid"#,
    )
    .bind(&id)
    .execute(&server.pool)
    .await
    .unwrap();
    let after: (Option<String>, Option<String>) = sqlx::query_as(key).bind(&id).fetch_one(&server.pool).await.unwrap();
    assert_eq!(after, (None, None));
    let c = send(r#"{"collection":"0xc"}"#).await;
    assert_eq!(deliveries_of(&server, c).await, 1);
    let (_, body) = server
        .admin(
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            Some(json!({"filter": ""})),
        )
        .await;
    assert_eq!(body["filter"], Value::Null);
    let a = send(r#"{"collection":"0xa"}"#).await;
    assert_eq!(deliveries_of(&server, a).await, 1);

    // An ordered endpoint takes the other fan-out path: filtered the same.
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": "ordered", "url": "http://127.0.0.1:9/o", "scheme": "standard-webhooks",
                        "fifo": true, "filter": "n >= 2"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO outhook.outbox (event_type, payload, owner)
         SELECT 'x', json_build_object('n', g), 'ordered' FROM generate_series(1, 3) g RETURNING id",
    )
    .fetch_all(&server.pool)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for id in ids {
        counts.push(deliveries_of(&server, id).await);
    }
    assert_eq!(counts, [0, 1, 1]);
}

const CATALOG: &str = r#"{
  "event_types": [
    {"name": "item.sold", "description": "An item was sold.", "group": "items",
     "schema": {"type": "object", "required": ["item_id"]},
     "examples": [{"item_id": "it_1", "price": {"amount": 1250, "currency": "EUR"}, "a": 1}]},
    {"name": "item.listed", "description": "An item was put up for sale.", "group": "items",
     "examples": [{"z": 1, "item_id": "it_2"}]},
    {"name": "ORDER_FILLED", "group": "orders", "deprecated": true}
  ]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_round_trips_through_a_file_the_cli_and_the_api() {
    let server = Server::start(&[]).await;
    let dir = std::env::temp_dir().join(format!("outhook-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("catalog.json");
    std::fs::write(&file, CATALOG).unwrap();
    let out = cli(&server.url, &["event-type", "apply", file.to_str().unwrap()]);
    assert!(
        out.starts_with("3 changed, 0 unchanged, 0 removed; strict off"),
        "{out}"
    );
    let out = cli(&server.url, &["event-type", "apply", file.to_str().unwrap()]);
    assert!(
        out.starts_with("0 changed, 3 unchanged"),
        "applying twice changed something: {out}"
    );

    // The API reads what the file said, examples byte for byte.
    let (status, catalog) = server.admin(Method::GET, "/v1/event-catalog", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = catalog["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["item.listed", "item.sold", "ORDER_FILLED"]);
    let raw = reqwest::Client::builder()
        .build()
        .unwrap()
        .get(format!("{}/v1/event-types/item.listed", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains(r#""examples":[{"z": 1, "item_id": "it_2"}]"#), "{raw}");

    // Export, then apply the export with --prune to a fresh state: the same.
    let exported = cli(&server.url, &["event-type", "export"]);
    let (status, _) = server.admin(Method::DELETE, "/v1/event-types/ORDER_FILLED", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .admin(
            Method::PUT,
            "/v1/event-types/stray.type",
            Some(json!({"description": "gone soon"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let export_file = dir.join("export.json");
    std::fs::write(&export_file, &exported).unwrap();
    let out = cli(
        &server.url,
        &["event-type", "apply", "--prune", export_file.to_str().unwrap()],
    );
    assert!(out.starts_with("1 changed, 2 unchanged, 1 removed"), "{out}");
    assert_eq!(cli(&server.url, &["event-type", "export"]), exported);

    // Owners read the catalog; only admins write it.
    let owner = cli(&server.url, &["token", "new", "--owner", "acme"]).trim().to_owned();
    let (status, list) = server.call(Some(&owner), Method::GET, "/v1/event-types", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    let (status, body) = server
        .call(Some(&owner), Method::PUT, "/v1/event-types/mine", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "urn:outhook:problem:forbidden");

    // An unknown key in a file is named.
    std::fs::write(&file, r#"{"event_types": [{"name": "a.b", "descripton": "typo"}]}"#).unwrap();
    let stderr = cli_fails(&server.url, &["event-type", "apply", file.to_str().unwrap()], None);
    assert!(stderr.contains("unknown field `descripton`"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_catalog_refuses_unknown_types_on_every_path() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();
    let stderr = cli_fails(&server.url, &["event-type", "strict", "on"], None);
    assert!(stderr.contains("the catalog is empty"), "{stderr}");
    cli(
        &server.url,
        &["event-type", "add", "item.sold", "--description", "sold"],
    );
    assert_eq!(cli(&server.url, &["event-type", "strict", "on"]).trim(), "strict on");
    let (status, _) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": receiver.url("/h"), "scheme": "standard-webhooks"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // The API: a problem naming the type; a known type still goes.
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "item.stolen", "owner": "acme", "payload": {"a": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:outhook:problem:event-type-refused");
    assert!(body["detail"].as_str().unwrap().contains("\"item.stolen\""), "{body}");
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "item.sold", "owner": "acme", "payload": {"a": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Concurrent API calls share a batch: the refused one fails alone.
    let calls = (0..8).map(|i| {
        let event_type = if i == 3 { "item.stolen" } else { "item.sold" };
        server.admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": event_type, "owner": "acme", "payload": {"i": i}})),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        let want = if i == 3 {
            StatusCode::CONFLICT
        } else {
            StatusCode::CREATED
        };
        assert_eq!(*status, want, "call {i}: {body}");
    }

    // The CLI.
    let stderr = cli_fails(
        &server.url,
        &["send", "--event-type", "item.stolen", "--owner", "acme"],
        Some(r#"{"a":1}"#),
    );
    assert!(stderr.contains("unknown event type \"item.stolen\""), "{stderr}");

    // The library: a typed error.
    let err = outhook_dispatcher::enqueue(
        &server.pool,
        &Event {
            event_type: "item.stolen",
            payload: "{}",
            owner: Some("acme"),
            ..Event::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, outhook_dispatcher::Error::EventRefused(ref m) if m.contains("item.stolen")),
        "{err:?}"
    );

    // Plain SQL: the error names the type.
    let err =
        sqlx::query("INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.stolen', '{}', 'acme')")
            .execute(&server.pool)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("unknown event type \"item.stolen\""), "{err}");

    let stolen: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox WHERE event_type = 'item.stolen'")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(stolen, 0, "a refused event reached the outbox");

    // Off again: anything flows.
    let (status, body) = server
        .admin(Method::PATCH, "/v1/event-catalog", Some(json!({"strict": false})))
        .await;
    assert_eq!((status, &body["strict"]), (StatusCode::OK, &Value::Bool(false)));
    sqlx::query("INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.stolen', '{}', 'acme')")
        .execute(&server.pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_type_name_outside_the_rule_is_refused_on_every_path() {
    let server = Server::start(&[]).await;
    let bad = "<svg/onload=alert(1)>";
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": bad, "owner": "acme", "payload": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("letter or digit"), "{body}");
    let (status, _) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": "acme", "url": "http://127.0.0.1:9/", "scheme": "standard-webhooks",
                        "event_types": [bad]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .admin(Method::PUT, "/v1/event-types/a%20b", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    cli_fails(&server.url, &["event-type", "add", bad], None);
    cli_fails(
        &server.url,
        &["send", "--event-type", bad, "--owner", "acme"],
        Some("{}"),
    );
    let err = outhook_dispatcher::enqueue(
        &server.pool,
        &Event {
            event_type: bad,
            payload: "{}",
            owner: Some("acme"),
            ..Event::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, outhook_dispatcher::Error::EventRefused(_)), "{err:?}");
    let err = sqlx::query("INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ($1, '{}', 'acme')")
        .bind(bad)
        .execute(&server.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outbox_event_type_name"), "{err}");
    let err = sqlx::query("INSERT INTO outhook.endpoint (owner, url, scheme, event_types) VALUES ('a', 'http://x/', 'standard-webhooks', $1)")
        .bind(vec![bad])
        .execute(&server.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("endpoint_event_type_names"), "{err}");
}

/// Sends `payload` of `event_type` to `acme` until the answer's status is
/// `want` (the schemas are read again within a second of a change).
async fn send_until(server: &Server, event_type: &str, payload: Value, want: StatusCode) -> Value {
    for _ in 0..40 {
        let (status, body) = server
            .admin(
                Method::POST,
                "/v1/messages",
                Some(json!({"event_type": event_type, "owner": "acme", "payload": payload})),
            )
            .await;
        if status == want {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{event_type} never answered {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_checked_against_their_schema_when_asked_with_every_failing_path() {
    let server = Server::start(&[]).await;
    let schema = json!({"type": "object", "required": ["item_id"],
                        "properties": {"item_id": {"type": "string"}, "price": {"type": "number", "minimum": 0}}});
    // A schema that does not compile, and an example it refuses, are refused.
    let (status, body) = server
        .admin(
            Method::PUT,
            "/v1/event-types/item.sold",
            Some(json!({"schema": {"type": 5}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not a usable JSON Schema"),
        "{body}"
    );
    let (status, body) = server
        .admin(
            Method::PUT,
            "/v1/event-types/item.sold",
            Some(json!({"schema": schema, "examples": [{"item_id": "it_1", "price": -1}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("example 1 does not match the schema at `/price`"),
        "{body}"
    );

    // Off by default: a schema alone checks nothing.
    let (status, _) = server
        .admin(
            Method::PUT,
            "/v1/event-types/item.sold",
            Some(json!({"schema": schema})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let bad = json!({"price": "free"});
    send_until(&server, "item.sold", bad.clone(), StatusCode::CREATED).await;

    // On for the type: every failing path is listed, nothing is enqueued.
    let (status, _) = server
        .admin(
            Method::PUT,
            "/v1/event-types/item.sold",
            Some(json!({"schema": schema, "validate": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let problem = send_until(&server, "item.sold", bad.clone(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["type"], "urn:outhook:problem:schema-mismatch");
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"") && paths.contains(&"/price"), "{problem}");
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outhook.outbox")
            .fetch_one(&server.pool)
            .await
            .unwrap()
    };
    let before = count().await;
    send_until(&server, "item.sold", bad.clone(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(count().await, before, "a refused payload was enqueued");
    send_until(
        &server,
        "item.sold",
        json!({"item_id": "it_1", "price": 3}),
        StatusCode::CREATED,
    )
    .await;
    // Types without a schema are not checked.
    send_until(&server, "item.listed", bad.clone(), StatusCode::CREATED).await;

    // Server-wide: every type with a schema, whatever its flag.
    let wide = Server::start(&["--validate-event-schemas"]).await;
    let (status, _) = wide
        .admin(
            Method::PUT,
            "/v1/event-types/item.sold",
            Some(json!({"schema": schema})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    send_until(&wide, "item.sold", bad, StatusCode::UNPROCESSABLE_ENTITY).await;
}
