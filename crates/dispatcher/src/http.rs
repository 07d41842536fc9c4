//! The only HTTP client Outhook uses: reqwest over rustls, connection reuse,
//! connect and total timeouts, no redirects, and an address check on the
//! resolved IP of every connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::Result;

/// The `User-Agent` Outhook sends.
pub const USER_AGENT: &str = concat!("Outhook/", env!("CARGO_PKG_VERSION"));

/// Which destination addresses deliveries may reach.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Networks opened despite being private, loopback, etc.
    pub allow: Vec<IpNet>,
    /// Refuse plain `http://` URLs.
    pub https_only: bool,
}

impl AddressPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_forbidden(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are judged as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local, unique-local, CGNAT, cloud metadata,
/// and other addresses that are not the public internet.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, including 169.254.169.254 metadata
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (incl. fd00:ec2::254 metadata)
        || (seg[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || seg[0] == 0x2002 // 6to4 can wrap private IPv4
        || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64
        || (seg[0] == 0x0100 && seg[1] == 0 && seg[2] == 0 && seg[3] == 0) // discard
}

/// Why a host's addresses were refused (found in a failed request's
/// error chain).
#[derive(Debug, thiserror::Error)]
#[error("every address of {host} is private or reserved ({addrs}); allowlist its network to deliver there")]
pub struct AddressRefused {
    /// The host name.
    pub host: String,
    /// The refused addresses.
    pub addrs: String,
}

/// A name that did not resolve (found in a failed request's error chain).
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {source}")]
pub struct DnsFailure {
    /// The host name.
    pub host: String,
    /// The resolver's error.
    #[source]
    pub source: std::io::Error,
}

/// Resolves with the system resolver and drops forbidden addresses, so no
/// connection ever reaches one.
#[derive(Debug)]
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| DnsFailure {
                    host: host.clone(),
                    source,
                })?
                .collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolved.into_iter().partition(|a| policy.permits(a.ip()));
            if allowed.is_empty() {
                let addrs = refused
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(AddressRefused { host, addrs }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// HTTP settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for the whole attempt: connect, send, and read the response.
    pub request_timeout: Duration,
    /// Response-body bytes read and stored at most.
    pub max_response_bytes: usize,
    /// Request bodies larger than this are not sent (dead letter).
    pub max_request_bytes: usize,
    /// Idle connections kept per host.
    pub pool_idle_per_host: usize,
    /// Which addresses may be reached.
    pub addresses: AddressPolicy,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024,
            max_request_bytes: 4 * 1024 * 1024,
            pool_idle_per_host: 256,
            addresses: AddressPolicy::default(),
        }
    }
}

/// Builds the delivery client: rustls, HTTP/1.1 and HTTP/2, keep-alive, no
/// redirects, no proxies, and the checked resolver.
pub fn build_client(settings: &HttpSettings) -> Result<reqwest::Client> {
    let resolver = CheckedResolver {
        policy: Arc::new(settings.addresses.clone()),
    };
    Ok(reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(settings.pool_idle_per_host)
        .tcp_nodelay(true)
        .https_only(settings.addresses.https_only)
        .dns_resolver(Arc::new(resolver))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_refused_by_default() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "2002:a00::1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_forbidden(ip(bad)), "{bad} should be forbidden");
            assert!(!AddressPolicy::default().permits(ip(bad)));
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_forbidden(ip(good)), "{good} should be allowed");
        }
    }

    #[test]
    fn an_allowlisted_network_opens_only_itself() {
        let policy = AddressPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            https_only: false,
        };
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        assert!(!policy.permits(ip("10.0.0.1")));
    }
}
