//! The served OpenAPI document against outside tools: an independent
//! validator accepts it, and schemathesis, fuzzing every operation from
//! it with every check, finds no server error, no response that breaks the
//! schema, no valid request refused and no invalid one taken.

use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::api::Server;

fn python_tool(module_or_bin: &str) -> std::path::PathBuf {
    outhook_testkit::verifiers::python().with_file_name(module_or_bin)
}

#[test]
fn openapi_spec_validator_accepts_the_committed_document() {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let out = Command::new(outhook_testkit::verifiers::python())
        .args(["-m", "openapi_spec_validator", doc])
        .output()
        .expect("python with openapi-spec-validator (./scripts/setup)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("OK"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_with_every_check_finds_no_mismatch_with_the_document() {
    let server = Server::start(&[]).await;
    // Some data for the read routes to find.
    let (_, endpoint) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": "https://acme.example/hook", "scheme": "standard-webhooks"})),
        )
        .await;
    server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "item.sold", "endpoint_id": endpoint["id"], "payload": {"a": 1}})),
        )
        .await;
    // An RSA endpoint, so that the provider has a public key to list.
    let (status, _) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": "https://acme.example/nft", "scheme": "cometh"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let base = server.base.clone();
    let admin = server.admin.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python_tool("schemathesis"))
            // One operation's exception, and why: tests/schemathesis.toml.
            .args([
                "--config-file",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml"),
            ])
            .args(["run", &format!("{base}/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            // Every check, in every phase: the server takes each request
            // the document calls valid, refuses each it calls invalid,
            // and answers as it says; the stateful phase follows the
            // document's links from created resources.
            .args(["--checks", "all"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", "60", "--workers", "2", "--request-timeout", "10"])
            .args(["--seed", "1"])
            .output()
            .expect("schemathesis (./scripts/setup)")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let tail: String = said
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("passed"), "{tail}");
    // The stateful phase ran, along the document's links.
    let stateful = said
        .lines()
        .skip_while(|l| !l.contains("Stateful"))
        .take(6)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(stateful.contains("API Links") && stateful.contains("passed"), "{tail}");
}
