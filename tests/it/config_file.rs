//! The settings file (`--config`, `OUTHOOK_CONFIG`): every setting the
//! flags and the environment hold, under the flag's name, with flag over
//! environment over file over default. The table lists every setting that
//! `run`, `serve` and `portal-link` show in their help (and the settings
//! only the environment held), so a new flag cannot be left out; each is
//! read back as clap parsed it, through `outhook config show`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::settings::settings;

/// `(key, in the file (TOML), as read from the file, from the environment,
/// from a flag)`. A switch has no flag value: it is given bare.
const TABLE: &[(&str, &str, &str, &str, Option<&str>)] = &[
    // Global.
    (
        "database-url",
        r#""postgres://file@db.example/app""#,
        "postgres://file@db.example/app",
        "postgres://env@db.example/app",
        Some("postgres://flag@db.example/app"),
    ),
    (
        "pooler",
        r#""transaction""#,
        "transaction",
        "transaction",
        Some("transaction"),
    ),
    (
        "allow-network",
        r#"["10.0.0.0/8", "192.168.0.0/16"]"#,
        "10.0.0.0/8,192.168.0.0/16",
        "172.16.0.0/12",
        Some("10.1.0.0/16"),
    ),
    ("https-only", "true", "true", "true", None),
    ("log-format", r#""json""#, "json", "json", Some("json")),
    (
        "otlp-endpoint",
        r#""http://127.0.0.1:4318""#,
        "http://127.0.0.1:4318",
        "http://127.0.0.1:4319",
        Some("http://127.0.0.1:4320"),
    ),
    // The worker.
    ("concurrency", "64", "64", "32", Some("16")),
    ("batch-size", "100", "100", "50", Some("25")),
    ("lease", r#""2m""#, "2m", "3m", Some("4m")),
    ("request-timeout", r#""20s""#, "20s", "21s", Some("22s")),
    ("connect-timeout", r#""2s""#, "2s", "3s", Some("4s")),
    (
        "proxy",
        r#""http://file.example:3128/""#,
        "http://file.example:3128/",
        "socks5://env.example:1080",
        Some("socks5h://flag.example:1080"),
    ),
    ("poll-interval", r#""2s""#, "2s", "3s", Some("4s")),
    ("endpoint-cache-ttl", r#""2s""#, "2s", "3s", Some("4s")),
    ("no-listen", "true", "true", "true", None),
    ("durable-claims", "true", "true", "true", None),
    ("busy-polling", "500", "500", "off", Some("250")),
    ("max-response-bytes", "1024", "1024", "2048", Some("4096")),
    ("max-request-bytes", "1048576", "1048576", "2097152", Some("3145728")),
    ("payload-budget", "33554432", "33554432", "16777216", Some("8388608")),
    ("response-budget", "16777216", "16777216", "8388608", Some("4194304")),
    ("max-lease-losses", "3", "3", "4", Some("6")),
    (
        "retry-schedule",
        r#"["1s", "10s", "1m"]"#,
        "1s,10s,1m",
        "2s,20s",
        Some("5s"),
    ),
    ("retry-jitter", "0.1", "0.1", "0.3", Some("0.4")),
    ("pool-size", "4", "4", "5", Some("6")),
    ("auto-disable-after", r#""3d""#, "3d", "4d", Some("6d")),
    ("retention", r#""30d""#, "30d", "31d", Some("32d")),
    ("maintenance-interval", r#""1m""#, "1m", "2m", Some("3m")),
    // `run` alone.
    (
        "metrics-addr",
        r#""127.0.0.1:9101""#,
        "127.0.0.1:9101",
        "127.0.0.1:9102",
        Some("127.0.0.1:9103"),
    ),
    // `serve` alone.
    (
        "listen",
        r#""127.0.0.1:8081""#,
        "127.0.0.1:8081",
        "127.0.0.1:8082",
        Some("127.0.0.1:8083"),
    ),
    ("no-worker", "true", "true", "true", None),
    ("max-body-bytes", "2048", "2048", "4096", Some("8192")),
    ("token-cache-ttl", r#""2s""#, "2s", "3s", Some("4s")),
    ("api-pool-size", "4", "4", "5", Some("6")),
    (
        "public-url",
        r#""https://file.example""#,
        "https://file.example",
        "https://env.example",
        Some("https://flag.example"),
    ),
    (
        "portal-frame-ancestor",
        r#"["https://a.example", "https://b.example"]"#,
        "https://a.example,https://b.example",
        "https://c.example",
        Some("https://d.example"),
    ),
    ("portal-session-ttl", r#""2h""#, "2h", "3h", Some("4h")),
    ("max-endpoints-per-owner", "5", "5", "6", Some("7")),
    ("portal-default-scheme", r#""rheo""#, "rheo", "trr", Some("cometh")),
    ("validate-event-schemas", "true", "true", "true", None),
    (
        "portal-title",
        r#""From the file""#,
        "From the file",
        "From the env",
        Some("From a flag"),
    ),
    (
        "portal-logo",
        r#""/srv/file.png""#,
        "/srv/file.png",
        "/srv/env.png",
        Some("/srv/flag.png"),
    ),
    (
        "portal-primary-color",
        r##""#112233""##,
        "#112233",
        "#445566",
        Some("#778899"),
    ),
    (
        "portal-support-url",
        r#""https://help.example/file""#,
        "https://help.example/file",
        "https://help.example/env",
        Some("https://help.example/flag"),
    ),
    // `portal-link` (its own --ttl has no environment variable).
];

/// Settings the environment alone held before the file: `(key, variable,
/// in the file, from the environment)`. Main keys are shown redacted.
const ENVIRONMENT_ONLY: &[(&str, &str, &str, &str)] = &[
    (
        "main-key",
        "OUTHOOK_MAIN_KEY",
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"",
        "REDACTED",
    ),
    (
        "main-key-file",
        "OUTHOOK_MAIN_KEY_FILE",
        "\"/etc/outhook/main.key\"",
        "/run/env.key",
    ),
    (
        "old-main-keys",
        "OUTHOOK_OLD_MAIN_KEYS",
        "[\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"]",
        "REDACTED",
    ),
    ("log", "OUTHOOK_LOG", "\"debug\"", "warn"),
];

/// The command lines each setting is read back through.
const COMMANDS: [&[&str]; 3] = [&["run"], &["serve"], &["portal-link", "--owner", "acme"]];

/// `outhook` with a clean environment of Outhook's variables, plus `env`.
fn outhook(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outhook"));
    command.args(args).env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("OUTHOOK_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

/// `config show --json` for `line`: key → (value, source).
fn show(config: &Path, line: &[&str], env: &[(&str, &str)]) -> BTreeMap<String, (Option<String>, String)> {
    let mut args = vec!["--config", config.to_str().unwrap(), "config", "show", "--json", "--"];
    args.extend(line);
    let out = outhook(&args, env);
    assert!(
        out.status.success(),
        "{line:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    shown
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_owned(),
                (
                    s["value"].as_str().map(str::to_owned),
                    s["source"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outhook-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The variable each key's flag reads, from the commands' help.
fn variables() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for command in ["run", "serve", "portal-link"] {
        for (flag, _, env) in settings(command) {
            if let Some(env) = env
                && flag != "--config"
            {
                found.insert(flag.trim_start_matches('-').to_owned(), env);
            }
        }
    }
    found
}

#[test]
fn every_setting_is_read_from_the_file_and_the_environment_and_a_flag_override_it() {
    let variables = variables();
    let listed: BTreeSet<&str> = TABLE.iter().map(|r| r.0).collect();
    let helped: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    assert_eq!(listed, helped, "the table lists exactly the settings the help shows");

    let dir = temp_dir();
    let mut file = String::new();
    for (key, toml, ..) in TABLE {
        file.push_str(&format!("{key} = {toml}\n"));
    }
    for (key, _, toml, _) in ENVIRONMENT_ONLY {
        file.push_str(&format!("{key} = {toml}\n"));
    }
    let config = write(&dir, "outhook.toml", &file);
    let check = outhook(&["config", "check", config.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    let env: Vec<(&str, &str)> = TABLE
        .iter()
        .map(|(key, _, _, env, _)| (variables[*key].as_str(), *env))
        .collect();
    let mut seen = BTreeSet::new();
    for line in COMMANDS {
        let from_file = show(&config, line, &[]);
        let from_env = show(&config, line, &env);
        let mut flagged: Vec<String> = line.iter().map(|s| (*s).to_owned()).collect();
        for (key, _, _, _, flag) in TABLE {
            if from_file.contains_key(*key) {
                flagged.push(match flag {
                    Some(v) => format!("--{key}={v}"),
                    None => format!("--{key}"),
                });
            }
        }
        let flagged: Vec<&str> = flagged.iter().map(String::as_str).collect();
        let from_flag = show(&config, &flagged, &env);
        for (key, _, file_value, env_value, flag) in TABLE {
            let Some(got) = from_file.get(*key) else { continue };
            seen.insert(*key);
            // The database URL's password would be redacted; these have none.
            assert_eq!(
                got,
                &(Some((*file_value).to_owned()), "file".to_owned()),
                "{line:?} {key} from the file"
            );
            assert_eq!(
                from_env[*key],
                (Some((*env_value).to_owned()), "env".to_owned()),
                "{line:?} {key}: the environment wins over the file"
            );
            assert_eq!(
                from_flag[*key],
                (Some(flag.unwrap_or("true").to_owned()), "flag".to_owned()),
                "{line:?} {key}: a flag wins over both"
            );
        }
    }
    assert_eq!(seen, listed, "every setting was read back through some command");

    // The settings only the environment held: from the file, and the
    // environment over it.
    let from_file = show(&config, &["run"], &[]);
    let from_env = show(
        &config,
        &["run"],
        &ENVIRONMENT_ONLY
            .iter()
            .map(|(_, var, _, env)| (*var, *env))
            .collect::<Vec<_>>(),
    );
    for (key, _, toml, env) in ENVIRONMENT_ONLY {
        let shown_file = from_file[*key].0.clone().unwrap();
        if *env == "REDACTED" {
            assert_eq!(shown_file, "REDACTED", "{key} is a secret");
            assert!(
                !String::from_utf8_lossy(
                    &outhook(&["--config", config.to_str().unwrap(), "config", "show"], &[]).stdout
                )
                .contains(toml.trim_matches(|c| c == '"' || c == '[' || c == ']'))
            );
        } else {
            assert_eq!(format!("\"{shown_file}\""), *toml, "{key} from the file");
        }
        assert_eq!(from_file[*key].1, "file", "{key}");
        assert_eq!(
            from_env[*key],
            (Some((*env).to_owned()), "env".to_owned()),
            "{key}: the environment wins"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_file_is_refused_with_every_problem_named_by_its_key() {
    let dir = temp_dir();
    let bad = write(
        &dir,
        "bad.toml",
        "concurency = 64\nmax-request-bytes = \"lots\"\nallow-network = [\"10.0.0.0/33\"]\nlease = [\"1s\", \"2s\"]\nmain-key = \"short\"\n[worker]\nconcurrency = 1\n",
    );
    let out = outhook(&["config", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "unknown key `concurency` (did you mean `concurrency`?)",
        "`max-request-bytes`: invalid value 'lots'",
        "`allow-network`: invalid value '10.0.0.0/33'",
        "`lease`: takes one value, not a list",
        "`main-key`: invalid configuration: a main key is the base64 of 32 bytes",
        "`[worker]` is a table",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from: {stderr}");
    }

    // Any command refuses to start on it, naming the unknown key, before
    // it does anything; so does a file that is not there.
    let out = outhook(&["migrate", "--check"], &[("OUTHOOK_CONFIG", bad.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `concurency`"));
    let out = outhook(&["--config", "/nonexistent/outhook.toml", "openapi"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/outhook.toml"));

    // A file that is fine, and the secrets it holds never shown.
    let good = write(
        &dir,
        "good.toml",
        "database-url = \"postgres://outhook:hunter2@db.example/app\"\nconcurrency = 8\n",
    );
    let out = outhook(&["config", "check"], &[("OUTHOOK_CONFIG", good.to_str().unwrap())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = outhook(&["--config", good.to_str().unwrap(), "config", "show"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(
        stdout.contains("database-url = \"postgres://outhook:REDACTED@db.example/app\"  # file"),
        "{stdout}"
    );
    assert!(stdout.contains("concurrency = \"8\"  # file"), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_command_runs_on_the_files_database_and_seals_with_its_main_key() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    let key = outhook(&["secrets", "new-main-key"], &[]);
    let key = String::from_utf8(key.stdout).unwrap();
    let dir = temp_dir();
    let config = write(
        &dir,
        "outhook.toml",
        &format!(
            "database-url = {}\nmain-key = {}\nallow-network = [\"127.0.0.0/8\"]\n",
            toml_string(&url),
            toml_string(key.trim())
        ),
    );
    let out = outhook(
        &[
            "--config",
            config.to_str().unwrap(),
            "endpoint",
            "add",
            "--owner",
            "acme",
            "--scheme",
            "trr",
            "--url",
            "http://127.0.0.1:9/hook",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret FROM outhook.endpoint_secret")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("ohenc:v1:"), "sealed with the file's main key");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `text` as a TOML string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}
