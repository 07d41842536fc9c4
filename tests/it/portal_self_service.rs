//! A customer helps itself in the portal, at the HTTP level and with forms
//! as a browser without script posts them: adds an endpoint from the
//! catalog with a filter and headers, copies its secret, sends an example
//! that the provider's own verifier accepts, edits it, deletes it; a
//! private address and a bad filter are refused as sentences in the form;
//! the operator's limit of endpoints per owner holds.

use std::time::Duration;

use outhook_testkit::receiver::Receiver;
use outhook_testkit::verifiers::{Case, Lang};
use reqwest::{Client, StatusCode, redirect};

use crate::api::{Server, cli};

const CATALOG: &str = r#"{"event_types": [
  {"name": "item.sold", "group": "items", "description": "An item was sold.",
   "examples": [{"item_id": "it_1", "price": {"amount": 1250, "currency": "EUR"}}]},
  {"name": "item.listed", "group": "items", "examples": [{"item_id": "it_2", "price": {"amount": 5}}]},
  {"name": "payout.sent", "group": "payouts"},
  {"name": "legacy.thing", "group": "payouts", "deprecated": true}
]}"#;

/// A portal session as a browser without script holds it.
struct Session {
    http: Client,
    base: String,
    cookie: String,
}

impl Session {
    async fn open(server: &Server, owner: &str) -> Self {
        let http = Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        let link = cli(
            &server.url,
            &["portal-link", "--owner", owner, "--public-url", &server.base],
        );
        let r = http.get(link.trim()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()["set-cookie"].to_str().unwrap();
        Self {
            http,
            base: server.base.clone(),
            cookie: set.split(';').next().unwrap().to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Posts a form; returns the status, the `Location` and the body.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status(), location, r.text().await.unwrap())
    }
}

/// The value of the first `name="…" value="…"` input in a page.
fn input_value(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name}"));
    let tag_start = page[..at].rfind('<').unwrap();
    let tag = &page[tag_start..at + page[at..].find('>').unwrap()];
    let v = tag
        .split("value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{name} has no value: {tag}"));
    v[..v.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_adds_edits_tests_and_deletes_an_endpoint_in_the_portal() {
    let server = Server::start(&["--max-endpoints-per-owner", "2"]).await;
    let receiver = Receiver::start().await.unwrap();
    let file = std::env::temp_dir().join(format!("outhook-portal-catalog-{}.json", std::process::id()));
    std::fs::write(&file, CATALOG).unwrap();
    cli(&server.url, &["event-type", "apply", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();

    let s = Session::open(&server, "acme").await;
    let (status, overview) = s.get("/portal").await;
    assert_eq!(status, StatusCode::OK);
    assert!(overview.contains("/portal/endpoints/new"), "no way to add an endpoint");

    // The form offers the catalog by group, without deprecated types.
    let (status, form) = s.get("/portal/endpoints/new").await;
    assert_eq!(status, StatusCode::OK);
    for t in ["item.sold", "item.listed", "payout.sent"] {
        assert!(form.contains(&format!("value=\"{t}\"")), "{t} not offered");
    }
    assert!(
        !form.contains("value=\"legacy.thing\""),
        "a deprecated type was offered"
    );
    assert!(form.contains("<legend>items</legend>") && form.contains("<legend>payouts</legend>"));
    let csrf = input_value(&form, "csrf");

    // A private address and a bad filter are sentences in the form, and
    // nothing is created.
    let (status, _, page) = s
        .post(
            "/portal/endpoints",
            &[
                ("csrf", &csrf),
                ("url", "http://10.1.2.3/hook"),
                ("scheme", "standard-webhooks"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(
        page.contains("This URL points to a private or reserved address"),
        "{page}"
    );
    assert!(
        page.contains("value=\"http://10.1.2.3/hook\""),
        "the form lost what was typed"
    );
    let (status, _, page) = s
        .post(
            "/portal/endpoints",
            &[
                ("csrf", &csrf),
                ("url", &receiver.url("/h")),
                ("scheme", "standard-webhooks"),
                ("filter", "price >"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Filter: at column 8"), "{page}");
    // Without the CSRF token: refused.
    let (status, _, _) = s
        .post(
            "/portal/endpoints",
            &[("url", &receiver.url("/h")), ("scheme", "standard-webhooks")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Added: two types from the catalog, a filter, a header.
    let url = receiver.url("/acme");
    let (status, _, created) = s
        .post(
            "/portal/endpoints",
            &[
                ("csrf", &csrf),
                ("url", &url),
                ("description", "orders"),
                ("scheme", "standard-webhooks"),
                ("event_type", "item.sold"),
                ("event_type", "item.listed"),
                ("filter", "price.amount >= 100"),
                ("headers", "X-Team: blue"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created
        .split("value=\"whsec_")
        .nth(1)
        .map(|s| format!("whsec_{}", &s[..s.find('"').unwrap()]))
        .expect("the secret is shown once");
    let (id, types, filter): (uuid::Uuid, Vec<String>, Option<String>) =
        sqlx::query_as("SELECT id, event_types, content_filter FROM outhook.endpoint WHERE owner = 'acme'")
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert_eq!(types, ["item.sold", "item.listed"]);
    assert_eq!(filter.as_deref(), Some("price.amount >= 100"));

    // Send the catalog's example; the delivery page shows its attempt; the
    // provider's verifier accepts it with the secret the customer copied.
    let (status, page) = s.get(&format!("/portal/endpoints/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("value=\"item.sold#0\""), "no example to send");
    assert!(page.contains("price.amount &gt;= 100"), "the filter is not shown");
    let (status, location, _) = s
        .post(
            &format!("/portal/endpoints/{id}/example"),
            &[("csrf", &csrf), ("example", "item.sold#0")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        location.starts_with("/portal/deliveries/") && location.ends_with("notice=example"),
        "{location}"
    );
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        &got[0].body[..],
        br#"{"item_id": "it_1", "price": {"amount": 1250, "currency": "EUR"}}"#
    );
    assert_eq!(got[0].headers["x-team"], "blue");
    let case = |body: &[u8]| Case {
        body: body.to_vec(),
        headers: got[0].header_pairs(),
        key: secret.clone(),
    };
    let verdicts = outhook_testkit::verifiers::run(
        Lang::Python,
        "standard-webhooks",
        &[
            case(&got[0].body),
            case(b"{\"item_id\": \"it_1\", \"price\": {\"amount\": 1}}"),
        ],
    )
    .unwrap();
    assert!(verdicts[0].ok, "the provider's verifier refused it: {:?}", verdicts[0]);
    assert!(!verdicts[1].ok, "a tampered body verified");
    let (_, delivery) = s.get(&location).await;
    assert!(delivery.contains("The example was sent as this delivery"));

    // Edit: a new URL, the filter removed; headers left empty are kept.
    let (_, edit) = s.get(&format!("/portal/endpoints/{id}/edit")).await;
    assert!(edit.contains("value=\"price.amount &gt;= 100\""));
    let new_url = receiver.url("/acme/v2");
    let (status, location, _) = s
        .post(
            &format!("/portal/endpoints/{id}/edit"),
            &[
                ("csrf", &csrf),
                ("url", &new_url),
                ("event_type", "item.sold"),
                ("filter", ""),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.ends_with("notice=saved"), "{location}");
    let (url_now, filter, headers): (String, Option<String>, serde_json::Value) =
        sqlx::query_as("SELECT url, content_filter, headers FROM outhook.endpoint WHERE id = $1")
            .bind(id)
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert_eq!((url_now.as_str(), filter), (new_url.as_str(), None));
    assert_eq!(headers["x-team"], "blue");

    // The operator's limit: two endpoints for this owner, not three.
    let second = [
        ("csrf", csrf.as_str()),
        ("url", url.as_str()),
        ("scheme", "standard-webhooks"),
    ];
    let (status, _, _) = s.post("/portal/endpoints", &second).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, page) = s.post("/portal/endpoints", &second).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("already has 2 endpoints"), "{page}");

    // Delete asks first, then deletes.
    let (status, confirm) = s.get(&format!("/portal/endpoints/{id}/delete")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Delete this endpoint?"));
    let (status, location, _) = s
        .post(&format!("/portal/endpoints/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/portal?notice=deleted")
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.endpoint WHERE id = $1")
        .bind(id)
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // Another owner cannot edit or delete it (it is gone for everyone now;
    // try with the remaining one).
    let other = Session::open(&server, "globex").await;
    let remaining: uuid::Uuid = sqlx::query_scalar("SELECT id FROM outhook.endpoint WHERE owner = 'acme'")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    let (status, _) = other.get(&format!("/portal/endpoints/{remaining}/edit")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
