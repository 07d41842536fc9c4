//! Every setting of `outhook run` and `outhook serve` is checked at start:
//! a NaN, negative, zero or absurd value ends the process with status 2 and
//! a message that names the setting, from the flag and from its
//! environment variable alike, before the database is asked. The table
//! below must list every setting the help shows, so a new one cannot go
//! unchecked.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Values each setting must refuse. An empty list: a switch, or a value
/// any text of which is valid.
const BAD: &[(&str, &[&str])] = &[
    // Global.
    ("--database-url", &["not a url"]),
    ("--allow-network", &["10.0.0.0/99", "somewhere"]),
    ("--log-format", &["xml", ""]),
    ("--pooler", &["session", ""]),
    // The worker (run and serve).
    ("--concurrency", &["0", "-1", "1000000", "many"]),
    ("--batch-size", &["0", "20000"]),
    ("--lease", &["0s", "30d", "soon", "10s"]),
    ("--request-timeout", &["0s", "2h"]),
    ("--connect-timeout", &["0s", "1h"]),
    ("--poll-interval", &["0s", "2h"]),
    ("--endpoint-cache-ttl", &["2h", "-1s"]),
    ("--busy-polling", &["-5", "fast", "20000000"]),
    ("--max-response-bytes", &["2000000", "-1"]),
    ("--max-request-bytes", &["0", "300000000"]),
    ("--payload-budget", &["0", "1024"]),
    ("--response-budget", &["0", "1024"]),
    ("--max-lease-losses", &["0", "5000"]),
    ("--retry-schedule", &["0s", "1s,0s", "40d"]),
    ("--retry-jitter", &["NaN", "-0.1", "2", "inf"]),
    ("--pool-size", &["0", "5000"]),
    ("--auto-disable-after", &["20000d", "-1s"]),
    ("--retention", &["1s", "0s"]),
    ("--maintenance-interval", &["0s", "2d"]),
    ("--no-listen", &[]),
    ("--durable-claims", &[]),
    // `run` alone.
    ("--metrics-addr", &["nowhere"]),
    // `serve` alone.
    ("--listen", &["nowhere", "127.0.0.1:99999"]),
    ("--no-worker", &[]),
    ("--max-body-bytes", &["0", "300000000"]),
    ("--token-cache-ttl", &["2h"]),
    ("--api-pool-size", &["0", "5000"]),
    ("--public-url", &["ftp://hooks.example.com", "not a url"]),
    ("--portal-frame-ancestor", &["javascript:alert(1)"]),
    ("--portal-session-ttl", &["0s", "60d"]),
    ("--max-endpoints-per-owner", &["0"]),
    ("--portal-default-scheme", &["nope", "hmac"]),
    ("--validate-event-schemas", &[]),
    ("--portal-title", &[" "]),
    ("--portal-logo", &["/nonexistent/logo.png"]),
    ("--portal-primary-color", &["red"]),
    ("--portal-support-url", &["javascript:alert(1)"]),
    ("--https-only", &[]),
    ("--config", &["/nonexistent/outhook.toml"]),
    ("--otlp-endpoint", &["ftp://collector.example", "not a url"]),
    (
        "--proxy",
        &[
            "ftp://proxy.example",
            "socks4://proxy.example:1080",
            "http://proxy.example:3128/path",
            "not a url",
        ],
    ),
];

/// The settings `outhook <command> --help` shows: (flag, takes a value,
/// environment variable).
pub fn settings(command: &str) -> Vec<(String, bool, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args([command, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut found: Vec<(String, bool, Option<String>)> = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("-h, ").unwrap_or(line);
        if let Some(rest) = line.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if name == "help" || name == "version" {
                continue;
            }
            let takes = rest[name.len()..].starts_with(" <");
            found.push((format!("--{name}"), takes, None));
        }
        // clap puts `[env: NAME=]` at the end of the setting's text.
        if let Some(at) = line.find("[env: ")
            && let Some(last) = found.last_mut()
        {
            let var: String = line[at + 6..].chars().take_while(|c| *c != '=' && *c != ']').collect();
            last.2 = Some(var);
        }
    }
    found
}

/// Runs `outhook` with `args` (and `env`), with a database that does not
/// answer; returns (status, stderr).
fn start(args: &[&str], env: Option<(&str, &str)>) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outhook"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !args.iter().any(|a| a.starts_with("--database-url")) && env.is_none_or(|(k, _)| k != "DATABASE_URL") {
        command.args(["--database-url", "postgres://outhook@127.0.0.1:1/none"]);
    }
    if let Some((k, v)) = env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The words a message may name the setting by: the flag, or the
/// library's name for it.
fn names(flag: &str) -> [String; 2] {
    let bare = flag.trim_start_matches('-');
    [bare.to_owned(), bare.replace('-', "_")]
}

#[test]
fn every_setting_refuses_nan_negative_zero_and_absurd_values_by_name_from_flags_and_environment() {
    let mut checked = 0;
    for command in ["run", "serve"] {
        let shown = settings(command);
        assert!(shown.len() > 20, "{command} --help lists its settings: {shown:?}");
        for (flag, takes_value, env) in &shown {
            let Some((_, bad)) = BAD.iter().find(|(f, _)| f == flag) else {
                panic!("`outhook {command} {flag}` is not in the table of settings: add what it must refuse");
            };
            assert_eq!(
                bad.is_empty(),
                !*takes_value,
                "{flag}: a switch has no bad values; a setting with a value has some"
            );
            for value in *bad {
                // `--flag=value`, so that a value such as `-1` is not a flag.
                let given = format!("{flag}={value}");
                let (code, stderr) = start(&[command, given.as_str()], None);
                assert_eq!(
                    code,
                    Some(2),
                    "`outhook {command} {flag} {value:?}` was not refused: {stderr}"
                );
                assert!(
                    names(flag).iter().any(|n| stderr.contains(n.as_str())),
                    "`outhook {command} {flag} {value:?}`: the message does not name the setting: {stderr}"
                );
                assert!(!stderr.contains("panicked"), "{stderr}");
                assert!(!stderr.contains('\u{1b}'), "no colour codes in a pipe: {stderr:?}");
                checked += 1;
            }
            if let (Some(var), Some(value)) = (env, bad.first()) {
                let (code, stderr) = start(&[command], Some((var.as_str(), value)));
                assert_eq!(code, Some(2), "{var}={value:?} was not refused: {stderr}");
                assert!(
                    names(flag).iter().any(|n| stderr.contains(n.as_str())) || stderr.contains(var.as_str()),
                    "{var}={value:?}: the message does not name the setting: {stderr}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked} refusals checked");
}
