//! Filter hints: what a producer says a payload holds at its owner's key
//! path, which the fan-out takes instead of parsing the payload; and
//! payloads the filters' `jsonb` cannot read as sent.

use outhook_dispatcher::filter::hint::{self, Hint};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api::Server;

/// A small deterministic generator (xorshift), so a failure is repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn ws(&mut self) -> &'static str {
        ["", "", " ", "\n\t "][self.below(4)]
    }

    /// A JSON value, with the keys and scalars a hint must get right.
    fn value(&mut self, depth: usize, out: &mut String) {
        const KEYS: &[&str] = &[r#""data""#, r#""shard""#, r#""x""#, r#""sh\u0061rd""#, r#""d\"ata""#];
        const SCALARS: &[&str] = &[
            "1",
            "1.0",
            "-0",
            "1e2",
            "1E+2",
            "0.5",
            "12345678901234567890.5",
            "1e10000",
            "true",
            "false",
            "null",
            r#""1""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            r#""é""#,
            r#""\u0000""#,
            r#""\\u0000""#,
            r#""\ud83d\ude00""#,
            r#""x\/y""#,
        ];
        let kind = if depth >= 3 { 2 } else { self.below(6) };
        if depth == 1 && self.below(2) == 0 {
            // The common case: the key path, a scalar there, maybe more.
            out.push_str("{\"shard\":");
            out.push_str(self.pick(SCALARS));
            if self.below(2) == 0 {
                out.push_str(",\"x\":");
                self.value(depth + 1, out);
            }
            out.push('}');
            return;
        }
        match kind {
            0 | 1 | 5 => {
                out.push('{');
                for i in 0..self.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    let ws = self.ws();
                    out.push_str(ws);
                    out.push_str(self.pick(KEYS));
                    out.push(':');
                    self.value(depth + 1, out);
                }
                out.push('}');
            }
            3 => {
                out.push('[');
                for i in 0..self.below(3) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.value(depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                let scalar = self.pick(SCALARS);
                out.push_str(scalar);
            }
        }
        let ws = self.ws();
        out.push_str(ws);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_is_what_postgresql_finds_at_the_key_path_or_none() {
    let server = Server::start(&[]).await;
    let path = r#"$."data"."shard"[*]"#;
    let keys = hint::path_keys(path).unwrap();
    assert_eq!(keys, ["data", "shard"]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut nothing, mut scalar, mut declined) = (0, 0, 0);
    for _ in 0..600 {
        let mut payload = String::from("{\"data\":");
        rng.value(1, &mut payload);
        if rng.below(3) == 0 {
            payload.push_str(",\"data\":");
            rng.value(1, &mut payload);
        }
        payload.push('}');
        outhook_signer::json::validate(payload.as_bytes())
            .unwrap_or_else(|e| panic!("the generator made bad JSON {payload}: {e}"));
        // Compared in PostgreSQL, as text and jsonb: a serde_json number
        // would round what the test is about.
        let found: Result<String, sqlx::Error> =
            sqlx::query_scalar("SELECT jsonb_path_query_array($1::json::jsonb, $2::jsonpath)::text")
                .bind(&payload)
                .bind(path)
                .fetch_one(&server.pool)
                .await;
        match hint::find(&payload, &keys) {
            Some(Hint::Nothing) => {
                nothing += 1;
                assert_eq!(found.unwrap(), "[]", "{payload}");
            }
            Some(Hint::Scalar(v)) => {
                scalar += 1;
                let same: bool = sqlx::query_scalar("SELECT $1::jsonb = jsonb_build_array($2::jsonb)")
                    .bind(found.unwrap())
                    .bind(v)
                    .fetch_one(&server.pool)
                    .await
                    .unwrap();
                assert!(same, "{payload}: the hint {v} is not what PostgreSQL finds");
            }
            None => declined += 1,
        }
    }
    assert!(
        nothing >= 50 && scalar >= 50 && declined >= 50,
        "{nothing} nothing, {scalar} scalars, {declined} declined"
    );
}

async fn endpoint(server: &Server, owner: &str, filter: &str) -> String {
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": owner, "url": "https://example.com/hook", "scheme": "standard-webhooks",
                        "filter": filter, "description": filter}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The filters (by description) of the endpoints a plain INSERT with this
/// payload and hint reaches.
async fn reached(server: &Server, owner: &str, payload: &str, hint: Option<(&str, Option<&str>)>) -> Vec<String> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO outhook.outbox (event_type, payload, owner, filter_hint_path, filter_hint_value)
         VALUES ('item.sold', $1::json, $2, $3, $4::jsonb) RETURNING id",
    )
    .bind(payload)
    .bind(owner)
    .bind(hint.map(|h| h.0))
    .bind(hint.and_then(|h| h.1))
    .fetch_one(&server.pool)
    .await
    .unwrap();
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT e.description FROM outhook.delivery d JOIN outhook.endpoint e ON e.id = d.endpoint_id
         WHERE d.message_id = $1",
    )
    .bind(id)
    .fetch_all(&server.pool)
    .await
    .unwrap();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_takes_a_hint_only_where_it_can_stand_in_for_the_payload() {
    let server = Server::start(&[]).await;
    let path = r#"$."data"."shard"[*]"#;
    endpoint(&server, "h", "data.shard = 1").await;
    endpoint(&server, "h", "data.shard = 2").await;
    let asked: Option<String> = sqlx::query_scalar("SELECT outhook.filter_hint_path('h')")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(asked.as_deref(), Some(path));
    let shard1 = r#"{"data":{"shard":1}}"#;
    for round in ["plain fan-out", "with an ordered endpoint"] {
        if round != "plain fan-out" {
            sqlx::query("UPDATE outhook.endpoint SET fifo = true WHERE owner = 'h' AND description = 'data.shard = 2'")
                .execute(&server.pool)
                .await
                .unwrap();
        }
        // No hint: the payload decides.
        assert_eq!(reached(&server, "h", shard1, None).await, ["data.shard = 1"], "{round}");
        // The hint decides, and the payload is not read: a hint that says
        // 2 sends a payload holding 1 to the endpoint on 2.
        assert_eq!(
            reached(&server, "h", shard1, Some((path, Some("2")))).await,
            ["data.shard = 2"],
            "{round}"
        );
        assert!(
            reached(&server, "h", shard1, Some((path, None))).await.is_empty(),
            "{round}"
        );
        // A hint for another path is not taken.
        assert_eq!(
            reached(&server, "h", shard1, Some((r#"$."shard"[*]"#, Some("2")))).await,
            ["data.shard = 1"],
            "{round}"
        );
    }
    // A hint must be a scalar.
    let refused = sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner, filter_hint_path, filter_hint_value)
         VALUES ('item.sold', '{}', 'h', $1, '[2]')",
    )
    .bind(path)
    .execute(&server.pool)
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("outbox_filter_hint"), "{refused}");
    // Once a filter of the owner is more than its key, the payload must be
    // read: no hint path is offered, and a hint sent all the same is not taken.
    endpoint(&server, "h", "data.shard = 3 and n > 0").await;
    let asked: Option<String> = sqlx::query_scalar("SELECT outhook.filter_hint_path('h')")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(asked, None);
    assert_eq!(
        reached(&server, "h", shard1, Some((path, Some("2")))).await,
        ["data.shard = 1"]
    );
    // A plain UPDATE that changes a filter's predicate and not its key
    // drops the key, and with it the key's standing for the whole filter.
    let whole: bool = sqlx::query_scalar(
        "UPDATE outhook.endpoint SET content_filter_path = '$.\"data\".\"shard\" == 9'
         WHERE owner = 'h' AND description = 'data.shard = 1' RETURNING content_filter_key_whole",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert!(!whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_jsonb_cannot_read_as_sent_are_matched_or_refused_alone() {
    let server = Server::start(&[]).await;
    endpoint(&server, "n", r#"name = "a""#).await;
    endpoint(&server, "n", "n > 0 or m > 0").await;
    // A NUL in a string: valid JSON, kept byte for byte, and matched by
    // the filters with the NUL read as U+FFFD (`\\u0000` is no NUL).
    let nul = r#"{"name":"a","note":"x\u0000y","n":1,"text":"\\u0000"}"#;
    assert_eq!(
        reached(&server, "n", nul, None).await,
        ["n > 0 or m > 0", r#"name = "a""#]
    );
    let stored: String = sqlx::query_scalar("SELECT payload::text FROM outhook.outbox WHERE owner = 'n'")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(stored, nul);
    // Through the API, several at once so that they may share a batch:
    // the one the filters cannot read at all (a lone surrogate) is refused
    // with a reason; the others go where they match.
    let sends = [
        (r#"{"name":"a","bad":"\ud800"}"#, None),
        (r#"{"name":"a","note":"\u0000"}"#, Some(1)),
        (r#"{"name":"b","n":5}"#, Some(1)),
        (r#"{"name":"a","n":5}"#, Some(2)),
        (r#"{"name":"a","n":1e200000}"#, None),
    ];
    let answers = futures_util::future::join_all(sends.iter().map(|(payload, _)| {
        server.raw(
            Method::POST,
            "/v1/messages",
            &[("content-type", "application/json")],
            format!(r#"{{"event_type":"item.sold","owner":"n","payload":{payload}}}"#).into_bytes(),
        )
    }))
    .await;
    for ((payload, want), (status, body)) in sends.iter().zip(answers) {
        match want {
            Some(n) => {
                assert_eq!(status, StatusCode::CREATED, "{payload}: {body}");
                assert_eq!(body["deliveries"], *n, "{payload}");
            }
            None => {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{payload}: {body}");
                assert!(
                    body["type"].as_str().unwrap_or("").ends_with("invalid-payload"),
                    "{body}"
                );
                assert!(body["detail"].as_str().unwrap_or("").contains("filter"), "{body}");
            }
        }
    }
    // To an owner without filters the same payloads are taken as they are.
    let (status, body) = server
        .raw(
            Method::POST,
            "/v1/messages",
            &[("content-type", "application/json")],
            br#"{"event_type":"item.sold","owner":"nobody","payload":{"bad":"\ud800"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
