//! `outhook secrets ...`: the main key that seals secrets at rest.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::commands::worker::DbArgs;
use crate::output::print_json;

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Print a new random main key (base64 of 32 bytes) for OUTHOOK_MAIN_KEY.
    NewMainKey,
    /// How the stored secrets are sealed: plain, or by which main key.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Seal every stored secret with OUTHOOK_MAIN_KEY, opening those sealed
    /// with an older key given in OUTHOOK_OLD_MAIN_KEYS; plain ones are
    /// sealed too. Online: a batch of rows at a time, each its own
    /// transaction. Workers must hold both keys while it runs.
    RotateMainKey {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

/// Runs a `secrets` subcommand.
pub async fn secrets(db: DbArgs, cmd: SecretsCommand) -> Result<ExitCode> {
    use outhook_dispatcher::secrets;
    if let SecretsCommand::NewMainKey = cmd {
        outln!("{}", secrets::MainKey::generate()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let pool = db.connect(2).await?;
    let keyring = secrets::keyring()?;
    match cmd {
        SecretsCommand::NewMainKey => {}
        SecretsCommand::Status { json } => {
            let inventory = secrets::check(&pool, keyring).await?;
            if json {
                print_json(&serde_json::json!({
                    "main_key": keyring.current_id(),
                    "plain": inventory.plain,
                    "sealed": inventory.sealed.iter().map(|(k, n)| serde_json::json!({"main_key": k, "count": n})).collect::<Vec<_>>(),
                }))?;
            } else {
                outln!("this process's main key: {}", keyring.current_id().unwrap_or("none"))?;
                outln!("plain text: {}", inventory.plain)?;
                for (k, n) in &inventory.sealed {
                    outln!("sealed with {k}: {n}")?;
                }
            }
        }
        SecretsCommand::RotateMainKey { batch } => {
            let Some(id) = keyring.current_id() else {
                anyhow::bail!("set OUTHOOK_MAIN_KEY to the new main key (and OUTHOOK_OLD_MAIN_KEYS to the old ones)");
            };
            secrets::check(&pool, keyring).await?;
            let n = secrets::reseal_all(&pool, keyring, batch.clamp(1, 10_000)).await?;
            outln!("{n} secrets sealed with main key {id}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
