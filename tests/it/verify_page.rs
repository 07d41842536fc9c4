//! The portal's verification page: the Node and Python snippets it shows,
//! taken from the rendered page as a customer would copy them, accept real
//! deliveries of every scheme a customer can pick and refuse tampered ones.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use outhook_testkit::receiver::Receiver;
use reqwest::{Client, Method, StatusCode, redirect};
use serde_json::{Value, json};

use crate::api::{Server, cli};

/// The text of `<code class="snippet LANG">` in a page, unescaped.
fn snippet(page: &str, lang: &str) -> String {
    let open = format!("<code class=\"snippet {lang}\">");
    let start = page.find(&open).unwrap_or_else(|| panic!("no {lang} snippet")) + open.len();
    let end = start + page[start..].find("</code>").unwrap();
    page[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

const NODE_HARNESS: &str = r#"
const lines = require('node:fs').readFileSync(0, 'utf8').trim().split('\n');
for (const line of lines) {
  const c = JSON.parse(line);
  console.log(JSON.stringify(verifyWebhook(c.headers, Buffer.from(c.body, 'base64'), c.key)));
}
"#;

const PYTHON_HARNESS: &str = r#"
import base64 as _b64, json as _json, sys as _sys
for _line in _sys.stdin:
    _c = _json.loads(_line)
    print(_json.dumps(bool(verify_webhook(_c["headers"], _b64.b64decode(_c["body"]), _c["key"]))))
"#;

/// Runs a snippet with its harness on `cases` (headers, body, key); returns
/// each verdict.
fn run(lang: &str, code: &str, cases: &[Value]) -> Vec<bool> {
    let dir = std::env::temp_dir().join(format!("outhook-snippet-{}-{lang}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (program, file, harness) = match lang {
        "node" => ("node".into(), dir.join("verify.cjs"), NODE_HARNESS),
        _ => (
            outhook_testkit::verifiers::python(),
            dir.join("verify.py"),
            PYTHON_HARNESS,
        ),
    };
    std::fs::write(&file, format!("{code}\n{harness}")).unwrap();
    let mut child = Command::new(program)
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = cases.iter().map(|c| format!("{c}\n")).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{lang}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "true")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_pages_snippets_verify_real_deliveries_of_every_scheme() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();
    let payload = json!({"type": "item.sold", "buyer": {"name": "Zoë"}, "price": 12.5, "count": 3});
    let mut endpoints = Vec::new();
    for scheme in outhook_signer::Scheme::NAMES {
        let (status, created) = server
            .admin(
                Method::POST,
                "/v1/endpoints",
                Some(json!({"owner": "acme", "url": receiver.url(&format!("/s/{scheme}")), "scheme": scheme})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        // What the customer verifies with, from where the portal shows it.
        let key = match *scheme {
            "cometh" => {
                let key_id = created["signing_key_id"].as_str().unwrap();
                let (status, pem) = server
                    .call(None, Method::GET, &format!("/v1/public-keys/{key_id}"), None)
                    .await;
                assert_eq!(status, StatusCode::OK);
                pem.as_str().unwrap().to_owned()
            }
            _ => {
                let (_, secrets) = server
                    .admin(Method::GET, &format!("/v1/endpoints/{id}/secret"), None)
                    .await;
                secrets["secrets"][0]["secret"].as_str().unwrap().to_owned()
            }
        };
        endpoints.push((*scheme, id, key));
    }
    let (status, _) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"owner": "acme", "event_type": "item.sold", "payload": payload})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let got = receiver
        .wait_for(endpoints.len(), Duration::from_secs(30))
        .await
        .unwrap();

    let http = Client::builder().redirect(redirect::Policy::none()).build().unwrap();
    let link = cli(
        &server.url,
        &["portal-link", "--owner", "acme", "--public-url", &server.base],
    );
    let r = http.get(link.trim()).send().await.unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    for (scheme, id, key) in &endpoints {
        let page = http
            .get(format!("{}/portal/endpoints/{id}/verify", server.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let request = got
            .iter()
            .find(|r| r.path == format!("/s/{scheme}"))
            .unwrap_or_else(|| panic!("no delivery for {scheme}"));
        let headers: serde_json::Map<String, Value> = request
            .header_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v)))
            .collect();
        let mut tampered = request.body.to_vec();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'3' { b'4' } else { b'3' };
        let case = |body: &[u8]| json!({"headers": headers, "body": base64::engine::general_purpose::STANDARD.encode(body), "key": key});
        let cases = [case(&request.body), case(&tampered)];
        for lang in ["node", "python"] {
            let code = snippet(&page, lang);
            assert_eq!(
                run(lang, &code, &cases),
                [true, false],
                "{scheme} in {lang}: the genuine request must verify and the tampered one must not"
            );
        }
    }
}
