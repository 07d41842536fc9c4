//! `outhook endpoint connection ...`: a client certificate, extra trusted
//! CAs, a proxy and credentials for one endpoint. Secrets are read from
//! files, never from the command line (which other users can see).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use outhook_dispatcher::http::AddressPolicy;
use outhook_server::admin::Scope;
use outhook_server::admin::connection::{
    self, AuthInput, AuthView, ConnectionPatch, ConnectionView, ProxyInput, ProxyView,
};
use outhook_signer::Secret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::output::print_json;

/// `outhook endpoint connection ...`.
#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Show an endpoint's connection settings (never a secret).
    Show {
        /// Endpoint id.
        id: Uuid,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change an endpoint's connection settings; what is not named stays.
    Set(Box<SetArgs>),
    /// Remove an endpoint's connection settings.
    Clear {
        /// Endpoint id.
        id: Uuid,
    },
}

/// `outhook endpoint connection set`.
#[derive(Args)]
#[command(group(ArgGroup::new("auth_kind").args(["basic_username", "bearer_token_file", "oauth2_token_url", "no_auth"])))]
pub struct SetArgs {
    /// Endpoint id.
    id: Uuid,
    /// `worker` (the worker's --proxy, if any), `none`, or a proxy URL:
    /// http://, https://, socks5:// or socks5h://.
    #[arg(long)]
    proxy: Option<String>,
    /// The client certificate chain, PEM, leaf first (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_certificate: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(long, value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// Remove the client certificate and its key.
    #[arg(long, conflicts_with_all = ["client_certificate", "client_key"])]
    no_client_certificate: bool,
    /// Extra CA certificates, PEM, trusted for the receiver's server.
    #[arg(long, value_name = "FILE")]
    ca_certificates: Option<PathBuf>,
    /// Remove the extra CA certificates.
    #[arg(long, conflicts_with = "ca_certificates")]
    no_ca_certificates: bool,
    /// Pin the receiver's server certificate(s), PEM: only these exact
    /// certificates are accepted, whatever their chain and names (instead
    /// of --ca-certificates).
    #[arg(long, value_name = "FILE")]
    pinned_certificates: Option<PathBuf>,
    /// Remove the pinned certificates.
    #[arg(long, conflicts_with = "pinned_certificates")]
    no_pinned_certificates: bool,
    /// Send HTTP Basic credentials with this username.
    #[arg(long, requires = "basic_password_file")]
    basic_username: Option<String>,
    /// The Basic password, read from this file.
    #[arg(long, value_name = "FILE", requires = "basic_username")]
    basic_password_file: Option<PathBuf>,
    /// Send this static bearer token, read from this file.
    #[arg(long, value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,
    /// Fetch bearer tokens by OAuth2 client credentials from this token URL.
    #[arg(long, requires_all = ["oauth2_client_id", "oauth2_client_secret_file"])]
    oauth2_token_url: Option<String>,
    /// The OAuth2 client id.
    #[arg(long, requires = "oauth2_token_url")]
    oauth2_client_id: Option<String>,
    /// The OAuth2 client secret, read from this file.
    #[arg(long, value_name = "FILE", requires = "oauth2_token_url")]
    oauth2_client_secret_file: Option<PathBuf>,
    /// The OAuth2 scope to ask for.
    #[arg(long, requires = "oauth2_token_url")]
    oauth2_scope: Option<String>,
    /// The OAuth2 audience to ask for.
    #[arg(long, requires = "oauth2_token_url")]
    oauth2_audience: Option<String>,
    /// Remove the credentials.
    #[arg(long)]
    no_auth: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} from {}", path.display()))
}

fn secret(path: &Path, what: &str) -> Result<Secret> {
    Ok(Secret::new(read(path, what)?.trim_end_matches(['\r', '\n']).to_owned()))
}

/// A PEM setting's change: `--no-X` removes it (`Some(None)`), a file sets
/// it, neither leaves it as it is (`None`).
fn pem_change(remove: bool, file: Option<&Path>, what: &str) -> Result<Option<Option<String>>> {
    if remove {
        return Ok(Some(None));
    }
    file.map(|p| read(p, what).map(Some)).transpose()
}

fn patch_of(a: &SetArgs) -> Result<ConnectionPatch> {
    let auth = if a.no_auth {
        Some(None)
    } else if let (Some(username), Some(file)) = (&a.basic_username, &a.basic_password_file) {
        Some(Some(AuthInput::Basic {
            username: username.clone(),
            password: Some(secret(file, "Basic password")?),
        }))
    } else if let Some(file) = &a.bearer_token_file {
        Some(Some(AuthInput::Bearer {
            token: Some(secret(file, "bearer token")?),
        }))
    } else if let (Some(url), Some(id), Some(file)) =
        (&a.oauth2_token_url, &a.oauth2_client_id, &a.oauth2_client_secret_file)
    {
        Some(Some(AuthInput::OAuth2 {
            token_url: url.clone(),
            client_id: id.clone(),
            client_secret: Some(secret(file, "OAuth2 client secret")?),
            scope: a.oauth2_scope.clone(),
            audience: a.oauth2_audience.clone(),
        }))
    } else {
        None
    };
    Ok(ConnectionPatch {
        proxy: a.proxy.as_deref().map(|p| match p {
            "worker" => ProxyInput::Worker,
            "none" => ProxyInput::Direct,
            url => ProxyInput::Url(url.to_owned()),
        }),
        client_certificate: pem_change(
            a.no_client_certificate,
            a.client_certificate.as_deref(),
            "client certificate",
        )?,
        client_key: a.client_key.as_deref().map(|p| secret(p, "client key")).transpose()?,
        ca_certificates: pem_change(a.no_ca_certificates, a.ca_certificates.as_deref(), "CA certificates")?,
        pinned_certificates: pem_change(
            a.no_pinned_certificates,
            a.pinned_certificates.as_deref(),
            "pinned certificates",
        )?,
        auth,
    })
}

fn print(view: &ConnectionView, json: bool) -> Result<()> {
    if json {
        return print_json(view);
    }
    let proxy = match &view.proxy {
        ProxyView::Worker => "the worker's (--proxy), if any".to_owned(),
        ProxyView::Direct => "none".to_owned(),
        ProxyView::Url(u) => u.clone(),
    };
    outln!("proxy: {proxy}")?;
    match &view.client_certificate {
        Some(c) => outln!(
            "client certificate: {} (sha256 {}), expires {}",
            c.subject,
            c.fingerprint_sha256,
            c.not_after.format("%Y-%m-%d %H:%M UTC")
        )?,
        None => outln!("client certificate: none")?,
    }
    for c in &view.ca_certificates {
        outln!("trusted CA: {} (sha256 {})", c.subject, c.fingerprint_sha256)?;
    }
    for c in &view.pinned_certificates {
        outln!(
            "pinned server certificate: {} (sha256 {}), expires {}",
            c.subject,
            c.fingerprint_sha256,
            c.not_after.format("%Y-%m-%d %H:%M UTC")
        )?;
    }
    match &view.auth {
        None => outln!("credentials: none")?,
        Some(AuthView::Basic { username }) => outln!("credentials: basic, username {username}")?,
        Some(AuthView::Bearer) => outln!("credentials: bearer token")?,
        Some(AuthView::OAuth2 {
            token_url,
            client_id,
            token,
            ..
        }) => {
            outln!("credentials: oauth2 client credentials, client {client_id} at {token_url}")?;
            if let Some(t) = token {
                outln!(
                    "  token: {} fetched, current one expires {}",
                    t.fetches,
                    t.expires_at.map(|e| e.to_rfc3339()).unwrap_or_else(|| "-".into())
                )?;
            }
        }
    }
    Ok(())
}

/// Runs a `connection` subcommand, as an admin.
pub async fn connection(pool: &PgPool, policy: &AddressPolicy, cmd: ConnectionCommand) -> Result<()> {
    let scope = Scope::Admin;
    match cmd {
        ConnectionCommand::Show { id, json } => print(&connection::get(pool, &scope, id).await?, json),
        ConnectionCommand::Set(args) => {
            let patch = patch_of(&args)?;
            print(
                &connection::update(pool, &scope, policy, args.id, patch).await?,
                args.json,
            )
        }
        ConnectionCommand::Clear { id } => print(&connection::clear(pool, &scope, id).await?, false),
    }
}
