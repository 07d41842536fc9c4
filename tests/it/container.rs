//! The container image: the repository's `Containerfile`, built with podman
//! from the base that `scripts/setup` makes from Debian's packages and the
//! binary this build made. In it, the CLI migrates and makes a token, and
//! `outhook serve` (host network, against the throwaway PostgreSQL) answers
//! `/healthz` and its HEALTHCHECK, delivers an event sent to its API, and
//! stops on SIGTERM well within the grace period, with status 0. The image
//! runs as a user that is not root and holds no shell.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use outhook_testkit::receiver::Receiver;
use serde_json::json;

/// The base image `scripts/setup` builds with mmdebstrap.
const BASE: &str = "localhost/outhook-base:bookworm";

/// `podman` with the repository's containers.conf (runc, no default
/// ulimits: what works on these machines).
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .env(
            "CONTAINERS_CONF",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/containers.conf"),
        )
        .output()
        .expect("podman is installed by scripts/setup")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the container and the image however the test ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.container]);
        let _ = podman(&["rmi", "-f", &self.image]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_delivers_and_drains_on_sigterm() {
    assert!(
        podman(&["image", "exists", BASE]).status.success(),
        "{BASE} is missing: scripts/setup builds it"
    );
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cleanup = Cleanup {
        container: format!("outhook-it-{tag}"),
        image: format!("localhost/outhook:it-{tag}"),
    };

    // Build: the Containerfile and this build's binary as the context.
    let context = std::env::temp_dir().join(format!("outhook-image-{tag}"));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile"),
        context.join("Containerfile"),
    )
    .unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_outhook"), context.join("outhook")).unwrap();
    let base_arg = format!("BASE={BASE}");
    ok(
        &podman(&[
            "build",
            // No intermediate images left behind.
            "--layers=false",
            "--format",
            "docker",
            "--network",
            "host",
            "--build-arg",
            &base_arg,
            "--build-arg",
            "BINARY=outhook",
            "-t",
            &cleanup.image,
            context.to_str().unwrap(),
        ]),
        "podman build",
    );
    std::fs::remove_dir_all(&context).unwrap();

    // A user that is not root, a healthcheck, and no shell.
    let config = ok(
        &podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Healthcheck.Test}} {{.Config.StopSignal}}",
            &cleanup.image,
        ]),
        "inspect",
    );
    assert_eq!(
        config.trim(),
        r#"65532:65532 ["CMD","/usr/local/bin/outhook","healthcheck"] SIGTERM"#
    );
    let shell = podman(&["run", "--rm", "--entrypoint", "/bin/sh", &cleanup.image, "-c", "true"]);
    assert!(!shell.status.success(), "the image has no shell");

    // The CLI in the image, against the throwaway PostgreSQL.
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    let db = format!("DATABASE_URL={url}");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "--network", "host", "-e", &db, &cleanup.image];
        all.extend(args);
        podman(&all)
    };
    ok(&run(&["migrate"]), "migrate in the image");
    let receiver = Receiver::start().await.unwrap();
    ok(
        &run(&[
            "endpoint",
            "add",
            "--owner",
            "acme",
            "--scheme",
            "trr",
            "--url",
            &receiver.url("/hook"),
            "--allow-network",
            "127.0.0.0/8",
        ]),
        "endpoint add in the image",
    );
    let admin = ok(&run(&["token", "new", "--admin"]), "token new in the image")
        .trim()
        .to_owned();

    // serve, detached.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("OUTHOOK_LISTEN=127.0.0.1:{port}");
    ok(
        &podman(&[
            "run",
            "-d",
            "--name",
            &cleanup.container,
            "--network",
            "host",
            // No systemd timer here: the health check is run by hand below.
            "--health-interval",
            "disable",
            "-e",
            &db,
            "-e",
            &listen,
            "-e",
            "OUTHOOK_ALLOW_NETWORKS=127.0.0.0/8",
            "-e",
            "OUTHOOK_POLL_INTERVAL=100ms",
            &cleanup.image,
        ]),
        "podman run serve",
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(answer) = http.get(format!("{base}/healthz")).send().await
            && answer.status() == reqwest::StatusCode::OK
        {
            break;
        }
        if Instant::now() > deadline {
            let logs = podman(&["logs", &cleanup.container]);
            panic!("/healthz never answered: {}", String::from_utf8_lossy(&logs.stderr));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok(
        &podman(&["healthcheck", "run", &cleanup.container]),
        "the image's HEALTHCHECK",
    );

    // One event through the API, delivered by the worker in the container.
    let sent = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&admin)
        .json(&json!({"event_type": "item.sold", "owner": "acme", "payload": {"item": 7}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), reqwest::StatusCode::CREATED);
    receiver.wait_for(1, Duration::from_secs(30)).await.unwrap();
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], br#"{"item":7}"#);
    // The result is written in the worker's next batch.
    crate::worker_process::wait_all_delivered(&pool, 1, Duration::from_secs(30)).await;

    // SIGTERM (the image's stop signal) drains and exits 0, well within
    // the grace period (after which podman would send SIGKILL: 137).
    let stopping = Instant::now();
    ok(&podman(&["stop", "--time", "20", &cleanup.container]), "podman stop");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(15), "stopped in {took:?}");
    let exit = ok(
        &podman(&["inspect", "--format", "{{.State.ExitCode}}", &cleanup.container]),
        "inspect",
    );
    assert_eq!(exit.trim(), "0", "serve exited cleanly on SIGTERM");
    drop(cleanup);
}
