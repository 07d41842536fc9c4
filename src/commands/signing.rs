//! `sign`, `verify`, `secret` and `key`: the signer from the shell.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use outhook_signer::{Bytes, HmacSettings, Message, RsaKeyPair, RsaPublicKey, Scheme, Secret, Signer, Verifier};

/// Which scheme and keys a command uses.
#[derive(Args)]
pub struct SchemeArgs {
    /// Scheme name: standard-webhooks, standard-webhooks-v1a, trr, real-id, rheo, cometh, github,
    /// stripe, or hmac (with --settings).
    #[arg(long)]
    scheme: String,
    /// Custom HMAC settings as JSON, for --scheme hmac.
    #[arg(long)]
    settings: Option<String>,
    /// File with the shared secret(s), one per line, newest first.
    #[arg(long, conflicts_with = "key_file", required_unless_present = "key_file")]
    secret_file: Option<PathBuf>,
    /// File with the key: RSA PEM (cometh), whsk_/whpk_ (standard-webhooks-v1a).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

impl SchemeArgs {
    fn scheme(&self) -> Result<Scheme> {
        if self.scheme == "hmac" {
            let settings = self.settings.as_deref().context("--scheme hmac needs --settings")?;
            let settings: HmacSettings = serde_json::from_str(settings).context("parsing --settings")?;
            return Ok(Scheme::try_from(&settings)?);
        }
        Ok(Scheme::by_name(&self.scheme)?)
    }

    fn keys(&self) -> Result<Vec<Secret>> {
        match (&self.secret_file, &self.key_file) {
            (Some(path), _) => {
                let text = read_secret_file(path)?;
                let keys: Vec<Secret> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Secret::from)
                    .collect();
                if keys.is_empty() {
                    bail!("{} holds no secret", path.display());
                }
                Ok(keys)
            }
            (None, Some(path)) => {
                let text = read_secret_file(path)?;
                let trimmed = text.trim();
                if trimmed.starts_with("-----BEGIN") {
                    Ok(vec![Secret::new(trimmed)])
                } else {
                    Ok(trimmed
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(Secret::from)
                        .collect())
                }
            }
            (None, None) => bail!("give --secret-file or --key-file"),
        }
    }
}

fn read_secret_file(path: &Path) -> Result<zeroize_string::Text> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(zeroize_string::Text(text))
}

/// Secret file contents, wiped when dropped.
mod zeroize_string {
    /// Text read from a secret file.
    pub struct Text(pub String);
    impl std::ops::Deref for Text {
        type Target = str;
        fn deref(&self) -> &str {
            &self.0
        }
    }
    impl Drop for Text {
        fn drop(&mut self) {
            // Overwrite before freeing; the signer's own types zeroize too.
            let bytes = std::mem::take(&mut self.0).into_bytes();
            drop(zeroize::Zeroizing::new(bytes));
        }
    }
}

fn read_body(path: Option<&Path>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    match path {
        None => {
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from stdin")?;
        }
        Some(p) if p == Path::new("-") => {
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from stdin")?;
        }
        Some(p) => body = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
    }
    Ok(body)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `outhook sign`.
#[derive(Args)]
pub struct SignArgs {
    #[command(flatten)]
    scheme: SchemeArgs,
    /// Message id (default: a new `msg_<uuid>`).
    #[arg(long)]
    id: Option<String>,
    /// Unix timestamp in seconds (default: now).
    #[arg(long, allow_negative_numbers = true)]
    timestamp: Option<i64>,
    /// The JSON body; `-` or nothing for stdin.
    body: Option<PathBuf>,
}

/// Prints the signed request as one JSON object.
pub fn sign(args: SignArgs) -> Result<ExitCode> {
    let scheme = args.scheme.scheme()?;
    let signer = Signer::new(scheme, &args.scheme.keys()?)?;
    let body = read_body(args.body.as_deref())?;
    outhook_signer::json::validate(&body).context("the body is not JSON")?;
    let payload = Bytes::from(body);
    let id = args
        .id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let request = signer.sign(&Message::new(&id, args.timestamp.unwrap_or_else(unix_now), &payload))?;
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::String(v.clone())))
        .collect();
    let body = std::str::from_utf8(&request.body).context("body is not UTF-8")?;
    outln!("{}", serde_json::json!({"headers": headers, "body": body}))?;
    Ok(ExitCode::SUCCESS)
}

/// `outhook verify`.
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    scheme: SchemeArgs,
    /// A received header, `Name: value`; repeat for each.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Verify as of this unix time (default: now).
    #[arg(long, allow_negative_numbers = true)]
    now: Option<i64>,
    /// The received body; `-` or nothing for stdin.
    body: Option<PathBuf>,
}

/// Exits 0 when the request verifies, 1 with a one-line reason when not.
pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let verifier = Verifier::new(args.scheme.scheme()?, &args.scheme.keys()?)?;
    let mut headers = Vec::with_capacity(args.headers.len());
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header `{h}` is not `Name: value`"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = read_body(args.body.as_deref())?;
    let now = UNIX_EPOCH + std::time::Duration::from_secs(args.now.unwrap_or_else(unix_now).max(0) as u64);
    match verifier.verify_at(&headers, &body, now) {
        Ok(()) => {
            outln!("valid")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            outln!("invalid: {e}")?;
            Ok(ExitCode::from(1))
        }
    }
}

/// `outhook secret ...`.
#[derive(Subcommand)]
pub enum SecretCommand {
    /// Print a new secret in the scheme's form.
    New {
        /// Scheme name.
        #[arg(long)]
        scheme: String,
    },
}

/// Runs a `secret` subcommand.
pub fn secret(cmd: SecretCommand) -> Result<ExitCode> {
    match cmd {
        SecretCommand::New { scheme } => {
            let secret = Scheme::by_name(&scheme)?.generate_secret()?;
            outln!("{}", secret.expose())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outhook key ...`.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print a new RSA private key as PKCS#8 PEM.
    New {
        /// Modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
    },
    /// Print the public key of a private key file, as PEM or JWK.
    Public {
        /// The private (or public) key file: RSA PEM, or whsk_ for v1a.
        #[arg(long)]
        key_file: PathBuf,
        /// Print a JSON Web Key instead of PEM.
        #[arg(long)]
        jwk: bool,
    },
}

/// Runs a `key` subcommand.
pub fn key(cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::New { bits } => {
            let key = RsaKeyPair::generate(bits)?;
            out!("{}", key.to_pkcs8_pem()?.as_str())?;
        }
        KeyCommand::Public { key_file, jwk } => {
            let text = read_secret_file(&key_file)?;
            let trimmed = text.trim();
            if trimmed.starts_with("whsk_") {
                let key = outhook_signer::Ed25519SigningKey::from_whsk(trimmed)?;
                outln!("{}", key.public_key().to_whpk())?;
                return Ok(ExitCode::SUCCESS);
            }
            let public = RsaPublicKey::from_pem(trimmed.as_bytes())?;
            if jwk {
                outln!("{}", public.to_jwk())?;
            } else {
                out!("{}", public.to_pem())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
