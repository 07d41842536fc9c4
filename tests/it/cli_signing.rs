//! `outhook sign`, `verify`, `secret new` and `key new|public` from the shell.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn outhook(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outhook-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn sign_then_verify_round_trips_through_the_shell() {
    let secret = outhook(&["secret", "new", "--scheme", "standard-webhooks"], b"");
    assert!(secret.status.success());
    let secret = String::from_utf8(secret.stdout).unwrap();
    assert!(secret.starts_with("whsec_"));
    let secret_file = temp_file("sw.secret", &secret);
    let s = secret_file.to_str().unwrap();
    let out = outhook(
        &[
            "sign",
            "--scheme",
            "standard-webhooks",
            "--secret-file",
            s,
            "--id",
            "msg_cli",
            "--timestamp",
            "1700000000",
        ],
        br#"{"b":1, "a":2}"#,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["body"], r#"{"b":1, "a":2}"#);
    assert_eq!(printed["headers"]["webhook-id"], "msg_cli");
    let sig = printed["headers"]["webhook-signature"].as_str().unwrap();
    let verify = |body: &[u8], sig: &str| {
        outhook(
            &[
                "verify",
                "--scheme",
                "standard-webhooks",
                "--secret-file",
                s,
                "--now",
                "1700000010",
                "--header",
                "webhook-id: msg_cli",
                "--header",
                "webhook-timestamp: 1700000000",
                "--header",
                &format!("webhook-signature: {sig}"),
            ],
            body,
        )
    };
    assert_eq!(verify(br#"{"b":1, "a":2}"#, sig).status.code(), Some(0));
    let bad = verify(br#"{"b":1, "a":3}"#, sig);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(bad.stdout).unwrap().trim(),
        "invalid: signature mismatch"
    );
    let usage = outhook(&["verify", "--scheme", "standard-webhooks"], b"");
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn real_id_sign_prints_the_json_stringify_body() {
    let secret_file = temp_file("rid.secret", "k\n");
    let out = outhook(
        &[
            "sign",
            "--scheme",
            "real-id",
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
        br#"{ "b" : 1.0, "1": "x" }"#,
    );
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["body"], r#"{"1":"x","b":1}"#);
    let not_json = outhook(
        &[
            "sign",
            "--scheme",
            "trr",
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
        b"{oops",
    );
    assert_eq!(not_json.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("not JSON"));
}

#[test]
fn rsa_keys_are_generated_published_and_used_from_the_shell() {
    let key = outhook(&["key", "new", "--bits", "2048"], b"");
    assert!(key.status.success());
    let pem = String::from_utf8(key.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key_file = temp_file("cometh.pem", &pem);
    let k = key_file.to_str().unwrap();
    let public = outhook(&["key", "public", "--key-file", k], b"");
    let public_pem = String::from_utf8(public.stdout).unwrap();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let jwk: serde_json::Value =
        serde_json::from_slice(&outhook(&["key", "public", "--key-file", k, "--jwk"], b"").stdout).unwrap();
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["e"], "AQAB");
    let signed: serde_json::Value = serde_json::from_slice(
        &outhook(
            &["sign", "--scheme", "cometh", "--key-file", k],
            br#"{"type":"ORDER_FILLED"}"#,
        )
        .stdout,
    )
    .unwrap();
    let public_file = temp_file("cometh.pub", &public_pem);
    let ok = outhook(
        &[
            "verify",
            "--scheme",
            "cometh",
            "--key-file",
            public_file.to_str().unwrap(),
            "--header",
            &format!(
                "x-cometh-indexer-signature: {}",
                signed["headers"]["x-cometh-indexer-signature"].as_str().unwrap()
            ),
        ],
        signed["body"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    assert_eq!(outhook(&["key", "new", "--bits", "1024"], b"").status.code(), Some(2));
}
