//! The providers' verification code, run as the providers print it.
//!
//! `verifiers/snippets/` holds each seed page's snippet verbatim;
//! `verifiers/verify.py` and `verifiers/verify.js` feed them cases on stdin,
//! one process per scheme, and answer one JSON line per case.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// The language a snippet is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `python3 verify.py`.
    Python,
    /// `node verify.js`.
    Node,
}

/// One request to verify.
#[derive(Debug, Clone)]
pub struct Case {
    /// The raw request body.
    pub body: Vec<u8>,
    /// The request headers.
    pub headers: Vec<(String, String)>,
    /// The secret text, or the public key PEM for RSA.
    pub key: String,
}

/// What the provider's code said.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the snippet accepted the request.
    pub ok: bool,
    /// What the snippet raised, if it raised.
    pub error: Option<String>,
    /// Python only: whether `json.dumps(json.loads(body), separators=(',', ':'))`
    /// rebuilds the body byte for byte.
    #[serde(default)]
    pub python_agrees: Option<bool>,
}

/// The folder holding the snippets and harnesses.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("verifiers")
}

/// The Python that runs the snippets: `OUTHOOK_PYTHON` when set, else the
/// project's virtual environment that `scripts/setup` makes under
/// `target/pyenv`, else `python3` from `PATH`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTHOOK_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python3");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

/// Runs every case through `scheme`'s snippet in `lang` and returns one
/// verdict per case, in order.
pub fn run(lang: Lang, scheme: &str, cases: &[Case]) -> Result<Vec<Verdict>> {
    let dir = dir();
    let mut command = match lang {
        Lang::Python => {
            let mut c = Command::new(python());
            c.arg(dir.join("verify.py"));
            c
        }
        Lang::Node => {
            let mut c = Command::new("node");
            c.arg(dir.join("verify.js"));
            c
        }
    };
    let mut child = command
        .arg(scheme)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the {lang:?} verifier (run ./scripts/setup)"))?;
    let mut stdin = child.stdin.take().context("verifier stdin")?;
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            let headers: serde_json::Map<String, serde_json::Value> = c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::json!({"body": STANDARD.encode(&c.body), "headers": headers, "key": c.key}).to_string()
        })
        .collect();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for line in lines {
            stdin.write_all(line.as_bytes())?;
            stdin.write_all(b"\n")?;
        }
        Ok(())
    });
    let stdout = child.stdout.take().context("verifier stdout")?;
    let mut verdicts = Vec::with_capacity(cases.len());
    for line in BufReader::new(stdout).lines() {
        verdicts.push(serde_json::from_str(&line?).context("verifier output")?);
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?
        .context("writing cases")?;
    let status = child.wait()?;
    if !status.success() || verdicts.len() != cases.len() {
        bail!(
            "{lang:?} verifier for {scheme} exited {status} after {} of {} cases",
            verdicts.len(),
            cases.len()
        );
    }
    Ok(verdicts)
}
