//! The served OpenAPI document against outside tools: an independent
//! validator accepts it, and schemathesis, fuzzing every operation from
//! it, finds no server error and no response that breaks the schema.

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
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_schema() {
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
    let base = server.base.clone();
    let admin = server.admin.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python_tool("schemathesis"))
            .args(["run", &format!("{base}/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
            ])
            .args([
                "--max-examples",
                "15",
                "--max-time",
                "60",
                "--workers",
                "2",
                "--request-timeout",
                "10",
            ])
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
}
