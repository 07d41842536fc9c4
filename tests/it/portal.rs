//! The delivery portal against a real `outhook serve`, worker, PostgreSQL
//! and receiver: in Debian's Chromium (playwright-core, axe-core), and at
//! the HTTP level for what a browser hides (cookie attributes, CSP, links
//! and sessions that must be refused).

use std::process::Command;

use outhook_testkit::receiver::{Receiver, Reply};
use reqwest::{Client, Method, StatusCode, redirect};
use serde_json::{Value, json};

use crate::api::{Server, cli, eventually as until};

async fn endpoint(server: &Server, owner: &str, url: &str) -> String {
    let (status, created) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": owner, "url": url, "scheme": "standard-webhooks",
                        "headers": {"x-tenant": "tenant-secret-value"}, "description": format!("{owner}'s main endpoint")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn send(server: &Server, owner: &str, event_type: &str) {
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"owner": owner, "event_type": event_type, "payload": {"item": {"id": 7, "price": 12.5}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn link(server: &Server, owner: &str) -> String {
    let (status, body) = server
        .admin(Method::POST, "/v1/portal-links", Some(json!({"owner": owner})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["url"].as_str().unwrap().to_owned()
}

fn no_redirects() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().unwrap()
}

/// The session cookie's `name=value` from a response.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    let set = response.headers().get("set-cookie")?.to_str().ok()?;
    Some(set.split(';').next()?.to_owned())
}

/// Proves the issue's browser checks: a link opens the owner's portal, a
/// delivery the worker really made is found and its attempt opened, retry
/// brings a new attempt, the secret rotates, the endpoint is disabled and
/// enabled, expired and tampered links are refused, one owner never sees
/// another's data, a form without its CSRF token is refused, an operator
/// signs in with an admin token, and axe finds no serious or critical
/// violation on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_works_in_a_real_browser() {
    // The provider's brand: a logo served by the portal, a colour, a title
    // and a support link.
    let logo = std::env::temp_dir().join(format!("outhook-logo-{}.svg", std::process::id()));
    std::fs::write(
        &logo,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><circle cx="14" cy="14" r="12" fill="#0a7d5a"/></svg>"##,
    )
    .unwrap();
    let server = Server::start(&[
        "--portal-title",
        "Acme Resale",
        "--portal-logo",
        logo.to_str().unwrap(),
        "--portal-primary-color",
        "#0a7d5a",
        "--portal-support-url",
        "mailto:help@acme.example",
    ])
    .await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Body(500, "from-the-receiver: database is down".into()));
    let acme_url = receiver.url("/acme/hooks");
    let globex_url = receiver.url("/globex/hooks");
    let acme = endpoint(&server, "acme", &acme_url).await;
    endpoint(&server, "globex", &globex_url).await;

    // A delivery that fails every attempt and becomes a dead letter.
    send(&server, "acme", "order.failed").await;
    let dead = until(&server, "/v1/deliveries?status=dead", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    let dead_id = dead["data"][0]["id"].as_i64().unwrap();
    let dead_attempts = dead["data"][0]["attempts"].as_i64().unwrap();

    // Then deliveries that succeed, for both owners.
    receiver.set_default(Reply::Status(200));
    send(&server, "acme", "item.sold").await;
    send(&server, "acme", "item.sold").await;
    send(&server, "globex", "item.sold").await;
    until(&server, "/v1/deliveries?status=delivered", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;

    let catalog = std::env::temp_dir().join(format!("outhook-browser-catalog-{}.json", std::process::id()));
    std::fs::write(
        &catalog,
        r#"{"event_types": [
             {"name": "item.sold", "group": "items", "description": "An item was sold.",
              "examples": [{"item_id": "it_9", "price": {"amount": 1250, "currency": "EUR"}}]},
             {"name": "item.listed", "group": "items", "description": "An item was put up for sale."},
             {"name": "payout.sent", "group": "payouts", "description": "Money left for the seller's bank."}]}"#,
    )
    .unwrap();
    cli(&server.url, &["event-type", "apply", catalog.to_str().unwrap()]);
    std::fs::remove_file(&catalog).ok();
    let new_url = receiver.url("/acme/new");
    let acme_link = link(&server, "acme").await;
    let globex_link = link(&server, "globex").await;
    let key = outhook_server::admin::portal::PortalKey::load(&server.pool)
        .await
        .unwrap();
    let expired = outhook_server::admin::portal::link_signed(
        &key,
        "acme",
        chrono::Utc::now() - chrono::Duration::minutes(1),
        &server.base,
    )
    .unwrap();

    // What the customer uploads on the connection page.
    let ca = outhook_testkit::tls::TestCa::new("Acme's CA").unwrap();
    let client = ca.client("portal-client").unwrap();
    let files = std::env::temp_dir().join(format!("outhook-browser-tls-{}", std::process::id()));
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("client.pem"), &client.cert_pem).unwrap();
    std::fs::write(files.join("client.key"), &client.key_pem).unwrap();
    let client_secret = "cs_portal_3b1f0c9e";

    let root = env!("CARGO_MANIFEST_DIR");
    let shots = std::env::var("OUTHOOK_SCREENSHOTS").unwrap_or_else(|_| format!("{root}/target/portal-screenshots"));
    let out = Command::new("node")
        .arg(format!("{root}/tests/portal/browser.mjs"))
        .current_dir(format!("{root}/tests/portal"))
        .env("PORTAL_BASE", &server.base)
        .env("PORTAL_LINK", &acme_link)
        .env("PORTAL_OTHER_LINK", &globex_link)
        .env("PORTAL_EXPIRED_LINK", &expired.url)
        .env("PORTAL_ADMIN_TOKEN", &server.admin)
        .env("PORTAL_ENDPOINT_URL", &acme_url)
        .env("PORTAL_OTHER_URL", &globex_url)
        .env("PORTAL_DEAD_DELIVERY", dead_id.to_string())
        .env("PORTAL_NEW_URL", &new_url)
        .env("PORTAL_SCREENSHOTS", &shots)
        .env("PORTAL_CLIENT_CERT", files.join("client.pem"))
        .env("PORTAL_CLIENT_KEY", files.join("client.key"))
        .env("PORTAL_TOKEN_URL", receiver.url("/oauth/token"))
        .env("PORTAL_CLIENT_SECRET", client_secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("portal browser checks passed"), "{stdout}");

    // The example the customer sent verifies with the secret it copied,
    // by the provider's own verifier; a tampered body does not.
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new secret "))
        .expect("the browser printed the secret it copied");
    let example = receiver
        .received()
        .into_iter()
        .find(|r| r.path == "/acme/new")
        .expect("the example reached the new endpoint");
    assert_eq!(
        &example.body[..],
        br#"{"item_id": "it_9", "price": {"amount": 1250, "currency": "EUR"}}"#
    );
    let case = |body: &[u8]| outhook_testkit::verifiers::Case {
        body: body.to_vec(),
        headers: example.header_pairs(),
        key: secret.to_owned(),
    };
    let verdicts = outhook_testkit::verifiers::run(
        outhook_testkit::verifiers::Lang::Node,
        "standard-webhooks",
        &[case(&example.body), case(br#"{"item_id": "it_9"}"#)],
    )
    .unwrap();
    assert!(verdicts[0].ok && !verdicts[1].ok, "{verdicts:?}");

    // What the browser did is in the database.
    let (_, retried) = server
        .admin(Method::GET, &format!("/v1/deliveries/{dead_id}"), None)
        .await;
    assert_eq!(retried["status"], "delivered", "{retried}");
    assert_eq!(retried["attempts"].as_i64().unwrap(), dead_attempts + 1, "{retried}");
    let (_, secrets) = server
        .admin(Method::GET, &format!("/v1/endpoints/{acme}/secret"), None)
        .await;
    assert_eq!(
        secrets["secrets"].as_array().map(Vec::len),
        Some(2),
        "rotated: {secrets}"
    );
    std::fs::remove_dir_all(&files).ok();
    let (_, conn) = server
        .admin(Method::GET, &format!("/v1/endpoints/{acme}/connection"), None)
        .await;
    // Uploaded, shown, then removed in the browser; the credentials stay.
    assert_eq!(conn["client_certificate"], Value::Null, "{conn}");
    assert_eq!(conn["auth"]["type"], "oauth2", "{conn}");
    assert_eq!(conn["auth"]["client_id"], "portal-client", "{conn}");
    assert_eq!(conn["auth"]["scope"], "webhooks:write", "{conn}");
    assert!(!conn.to_string().contains(client_secret), "{conn}");
    let (_, e) = server.admin(Method::GET, &format!("/v1/endpoints/{acme}"), None).await;
    assert_eq!(
        e["enabled"], true,
        "re-enabled, and the forged disable did nothing: {e}"
    );
}

/// Links, sessions, cookies and headers, checked where a browser would hide
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_links_and_sessions_are_refused_when_they_should_be() {
    let server = Server::start(&[]).await;
    let http = no_redirects();
    endpoint(&server, "acme", "http://127.0.0.1:9/hook").await;

    // Links: an admin names the owner; an owner's token makes its own only.
    let (status, body) = server.admin(Method::POST, "/v1/portal-links", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = server
        .admin(
            Method::POST,
            "/v1/portal-links",
            Some(json!({"owner": "acme", "ttl_seconds": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a 5-second link");
    let owner_token = cli(&server.url, &["token", "new", "--owner", "acme"]).trim().to_owned();
    let (status, _) = server
        .call(
            Some(&owner_token),
            Method::POST,
            "/v1/portal-links",
            Some(json!({"owner": "globex"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an owner's link for another owner");
    let (status, own) = server
        .call(Some(&owner_token), Method::POST, "/v1/portal-links", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    assert_eq!(own["owner"], "acme");
    assert!(
        own["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/portal/link?token=", server.base))
    );

    // Without a session: the pages send to the sign-in, forms are refused.
    let r = http.get(format!("{}/portal", server.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/portal/login");
    let r = http
        .post(format!("{}/portal/logout", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A link opens a session whose cookie is HttpOnly and SameSite, Secure
    // behind TLS; pages have a strict CSP and cannot be framed.
    let url = own["url"].as_str().unwrap();
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/portal", "Max-Age=3600"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let r = http.get(url).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
    let cookie = session_cookie(&r).unwrap();
    let page = http
        .get(format!("{}/portal", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");

    // The same link from the CLI.
    let printed = cli(
        &server.url,
        &["portal-link", "--owner", "acme", "--public-url", &server.base],
    );
    let r = http.get(printed.trim()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{printed}");
    assert!(session_cookie(&r).is_some());

    // A forged cookie is no session.
    let (name, value) = cookie.split_once('=').unwrap();
    let forged = format!("{name}={}", value.replacen('e', "f", 1));
    let r = http
        .get(format!("{}/portal", server.base))
        .header("cookie", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a forged cookie");

    // An operator's session ends when its token is revoked.
    let token = cli(&server.url, &["token", "new", "--admin"]).trim().to_owned();
    let r = http
        .post(format!("{}/portal/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let operator = session_cookie(&r).unwrap();
    let open = |c: String| {
        let http = http.clone();
        let base = server.base.clone();
        async move {
            http.get(format!("{base}/portal"))
                .header("cookie", c)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(open(operator.clone()).await, StatusCode::OK);
    let id = outhook_server::admin::token::id_of(&token).unwrap();
    cli(&server.url, &["token", "revoke", &id.to_string()]);
    assert_eq!(open(operator).await, StatusCode::SEE_OTHER, "a revoked token's session");
}

/// A request whose claim a PostgreSQL crash forgot is logged as superseded,
/// with the same attempt number as the request that went again: the
/// delivery's page lists both, in the order they went out, and each link
/// opens its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_attempt_and_its_resend_each_open_their_own_detail() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Body(200, "the-resend-was-received".into()));
    endpoint(&server, "acme", &receiver.url("/acme/hooks")).await;
    send(&server, "acme", "item.sold").await;
    let delivered = until(&server, "/v1/deliveries?status=delivered", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    let id = delivered["data"][0]["id"].as_i64().unwrap();
    // The first request, as the completion logs it when its claim was lost:
    // same number, earlier, superseded.
    sqlx::query(
        "INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers,
                                      status_code, response_body, outcome, superseded)
         SELECT delivery_id, attempt, started_at - interval '1 second', duration_ms, url, request_headers,
                200, 'the-first-request-was-received', outcome, true
         FROM outhook.attempt WHERE delivery_id = $1",
    )
    .bind(id)
    .execute(&server.pool)
    .await
    .unwrap();

    let http = no_redirects();
    let r = http.get(link(&server, "acme").await).send().await.unwrap();
    let cookie = session_cookie(&r).unwrap();
    let get = |path: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        let base = server.base.clone();
        async move {
            let r = http
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.text().await.unwrap()
        }
    };
    let page = get(format!("/portal/deliveries/{id}")).await;
    let detail = |page: &str| {
        page.split("<section class=\"card attempt\"")
            .nth(1)
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        detail(&page).contains("the-resend-was-received"),
        "the latest request is shown by default"
    );
    let links: Vec<String> = page
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|h| h.contains("attempt_id="))
        .map(|h| h.replace("&amp;", "&"))
        .collect();
    assert_eq!(links.len(), 2, "both requests are listed: {links:?}");
    assert_ne!(links[0], links[1]);
    // Newest first: the resend, then the superseded first request.
    let resend = get(links[0].clone()).await;
    assert!(detail(&resend).contains("the-resend-was-received"));
    let first = get(links[1].clone()).await;
    assert!(
        detail(&first).contains("the-first-request-was-received"),
        "{}",
        detail(&first)
    );
    assert!(page.contains("superseded"));
}

/// With allowed parent origins, the CSP names them and, behind TLS, the
/// cookie is the kind a cross-site iframe can keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_can_be_framed_by_allowed_origins_only() {
    let server = Server::start(&[
        "--portal-frame-ancestor",
        "https://dash.example.com,https://admin.example.com",
    ])
    .await;
    let http = no_redirects();
    endpoint(&server, "acme", "http://127.0.0.1:9/hook").await;
    let url = link(&server, "acme").await;
    let r = http
        .get(&url)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("Secure; SameSite=None; Partitioned"), "{set}");
    let cookie = session_cookie(&r).unwrap();
    let page = http
        .get(format!("{}/portal", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors https://dash.example.com https://admin.example.com"),
        "{csp}"
    );
    assert!(page.headers().get("x-frame-options").is_none());
}
