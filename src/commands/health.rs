//! `outhook healthcheck`: asks a running `outhook serve` whether it
//! answers, for a container's `HEALTHCHECK`, which has no shell or curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

/// `outhook healthcheck`.
#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// Where `outhook serve` listens (the same as serve's --listen); an
    /// unspecified address (0.0.0.0, ::) is asked on loopback.
    #[arg(long, env = "OUTHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// GETs `/healthz`: exit 0 on 200, 1 on any other answer or none.
pub async fn healthcheck(args: HealthcheckArgs) -> Result<ExitCode> {
    let mut at = args.listen;
    if at.ip().is_unspecified() {
        at.set_ip(match at.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let url = format!("http://{at}/healthz");
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    match client.get(&url).send().await {
        Ok(answer) if answer.status() == reqwest::StatusCode::OK => {
            outln!("healthy: {url} answered 200")?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(answer) => {
            eprintln!("unhealthy: {url} answered {}", answer.status());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
