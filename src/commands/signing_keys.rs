//! `outhook signing-key ...`: the RSA keys of the asymmetric schemes.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use outhook_dispatcher::db::signing_key::{signing_key_get, signing_key_insert, signing_key_list};
use outhook_signer::RsaKeyPair;

use crate::commands::worker::DbArgs;
use crate::output::print_json;

/// `outhook signing-key ...`.
#[derive(Subcommand)]
pub enum SigningKeyCommand {
    /// Generate and store a new RSA key pair.
    New {
        /// A unique name.
        #[arg(long)]
        name: String,
        /// Modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
    },
    /// List signing keys.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a key's public half, to publish.
    Public {
        /// Key id or name.
        key: String,
        /// As a JWK instead of PEM.
        #[arg(long)]
        jwk: bool,
    },
}

/// Runs a `signing-key` subcommand.
pub async fn signing_key(db: DbArgs, cmd: SigningKeyCommand) -> Result<ExitCode> {
    let pool = db.connect(2).await?;
    match cmd {
        SigningKeyCommand::New { name, bits } => {
            let key = tokio::task::spawn_blocking(move || RsaKeyPair::generate(bits)).await??;
            let k = signing_key_insert(&pool, &name, &key).await?;
            outln!("signing key {} ({})", k.id, k.name)?;
        }
        SigningKeyCommand::List { json } => {
            let keys = signing_key_list(&pool).await?;
            if json {
                print_json(&keys)?;
            } else {
                for k in &keys {
                    outln!("{}  {:<16} {}  {}", k.id, k.name, k.algorithm, k.created_at)?;
                }
            }
        }
        SigningKeyCommand::Public { key, jwk } => {
            let k = signing_key_get(&pool, &key).await?;
            if jwk {
                outln!("{}", k.public_key_jwk)?;
            } else {
                out!("{}", k.public_key_pem)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
