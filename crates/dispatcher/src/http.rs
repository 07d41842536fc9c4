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

/// Headers that an endpoint's static headers may not set: the request's
/// own, and Standard Webhooks' signature headers (a scheme's own signature
/// header is dropped from static headers as well).
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The header that carries the message id when an endpoint names none and
/// its scheme sends none of its own.
pub const DEFAULT_MESSAGE_ID_HEADER: &str = "webhook-id";

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
        !is_forbidden(ip)
            || self.allow.iter().any(|net| match (net, ip) {
                // An IPv6 network can hold IPv4-mapped addresses
                // (`::ffff:10.0.0.0/104`): judge an IPv4 address in its
                // mapped form there, whichever form it arrived in.
                (IpNet::V6(net), IpAddr::V4(v4)) => net.contains(&v4.to_ipv6_mapped()),
                (net, ip) => net.contains(&ip),
            })
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

/// Why an endpoint URL cannot be delivered to. Checked the same way when an
/// endpoint is created (by the CLI or the API) and before every attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The text is not a URL.
    #[error("`{url}` is not a URL: {reason}")]
    Invalid {
        /// The text as given.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// Not `https` (or `http` while https-only is off).
    #[error("scheme `{0}` is not allowed: use https, or http where https-only is off")]
    Scheme(String),
    /// The URL names no host.
    #[error("the URL has no host")]
    NoHost,
    /// An IP literal in a private or reserved range that is not allowlisted.
    #[error(transparent)]
    Refused(#[from] AddressRefused),
}

/// `url` with its user-info (the credentials in `https://user:pass@host/`)
/// shown as `***`, for listings, answers, pages and logs: the user-info is
/// a secret. A URL without one, or that does not parse, comes back as it
/// was (with any `user@` cut the same way).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A URL given back after a listing showed it redacted: where `given`'s
/// user-info is exactly `***` and its host and port are `stored`'s, the
/// user-info `stored` holds is put back, so that reading an endpoint and
/// writing it back keeps its credentials (never to another host). Any
/// other URL is taken as given.
pub fn restore_redacted_url(given: &str, stored: &str) -> String {
    let Some((scheme, rest)) = given.split_once("://") else {
        return given.to_owned();
    };
    let Some(after) = rest.strip_prefix("***@") else {
        return given.to_owned();
    };
    let Some((_, stored_rest)) = stored.split_once("://") else {
        return given.to_owned();
    };
    let stored_end = stored_rest.find(['/', '?', '#']).unwrap_or(stored_rest.len());
    let given_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    match stored_rest[..stored_end].rfind('@') {
        Some(at) if stored_rest[at + 1..stored_end].eq_ignore_ascii_case(&after[..given_end]) => {
            format!("{scheme}://{}@{after}", &stored_rest[..at])
        }
        _ => given.to_owned(),
    }
}

/// Parses an endpoint URL. Only the syntax: see [`AddressPolicy::check_url`]
/// for what may be reached.
pub fn parse_url(text: &str) -> std::result::Result<reqwest::Url, UrlError> {
    reqwest::Url::parse(text).map_err(|e| UrlError::Invalid {
        url: text.to_owned(),
        reason: e.to_string(),
    })
}

impl AddressPolicy {
    /// Whether a delivery may go to `url`: `https` (or `http` unless
    /// https-only), a host, and an IP literal only where [`Self::permits`]
    /// it. Host names are checked again at every connection, on each
    /// resolved address, by the client's resolver.
    pub fn check_url(&self, url: &reqwest::Url) -> std::result::Result<(), UrlError> {
        match url.scheme() {
            "https" => {}
            "http" if !self.https_only => {}
            other => return Err(UrlError::Scheme(other.to_owned())),
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or(UrlError::NoHost)?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !self.permits(ip)
        {
            return Err(UrlError::Refused(AddressRefused {
                host: host.to_owned(),
                addrs: ip.to_string(),
            }));
        }
        Ok(())
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date, as a delay
/// from `now`. A date in the past is no delay; anything else is `None`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Why a host's addresses were refused (found in a failed request's
/// error chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
/// connection ever reaches one. The proxy's own host (set by the operator
/// or the endpoint's administrator, never by a payload) is exempt.
#[derive(Debug)]
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
    proxy_host: Option<String>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let exempt = self
            .proxy_host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| DnsFailure {
                    host: host.clone(),
                    source,
                })?
                .collect();
            if exempt {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
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
    /// The proxy every request goes through, unless an endpoint names its
    /// own or none.
    pub proxy: Option<crate::connection::ProxyUrl>,
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
            proxy: None,
        }
    }
}

/// Builds the delivery client: rustls, HTTP/1.1 and HTTP/2, keep-alive, no
/// redirects, the checked resolver, and the worker's proxy if it has one
/// (never one from the environment).
pub fn build_client(settings: &HttpSettings) -> Result<reqwest::Client> {
    Ok(client_builder(settings, settings.proxy.as_ref())?.build()?)
}

/// The delivery client of an endpoint with connection settings of its own:
/// as [`build_client`], with its proxy (or none), its client certificate
/// and its extra trusted CAs. Its connections are pooled for it alone.
pub fn build_client_for(
    settings: &HttpSettings,
    connection: &crate::connection::Connection,
) -> Result<reqwest::Client> {
    use crate::connection::ProxyChoice;
    let proxy = match &connection.proxy {
        ProxyChoice::Worker => settings.proxy.as_ref(),
        ProxyChoice::Direct => None,
        ProxyChoice::Via(p) => Some(p),
    };
    let mut builder = client_builder(settings, proxy)?;
    if connection.pinned_certificates.is_some() {
        // The pin replaces the roots: TLS settings of its own, with the
        // client certificate in them.
        let tls = crate::pinned::client_config(connection).map_err(|e| crate::Error::Config(e.to_string()))?;
        return Ok(builder.tls_backend_preconfigured(tls).build()?);
    }
    if let Some(pem) = connection.identity_pem() {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes())?);
    }
    if let Some(ca) = &connection.ca_certificates {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca.as_bytes())?);
    }
    Ok(builder.build()?)
}

fn client_builder(
    settings: &HttpSettings,
    proxy: Option<&crate::connection::ProxyUrl>,
) -> Result<reqwest::ClientBuilder> {
    let resolver = CheckedResolver {
        policy: Arc::new(settings.addresses.clone()),
        proxy_host: proxy.map(|p| p.host().to_owned()),
    };
    let builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(settings.pool_idle_per_host)
        .tcp_nodelay(true)
        .https_only(settings.addresses.https_only)
        .dns_resolver(Arc::new(resolver));
    Ok(match proxy {
        Some(p) => builder.proxy(reqwest::Proxy::all(p.url().clone())?),
        None => builder,
    })
}

/// Checks, before a request is handed to a proxy, that the target's host
/// resolves here to an address the policy permits (the proxy resolves it
/// again: it must enforce its own rules, see the README).
pub async fn check_target_via_proxy(policy: &AddressPolicy, url: &reqwest::Url) -> std::result::Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err("the URL has no host".into());
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok() {
        return Ok(()); // check_url judged it already
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("could not resolve {host}: {e}"))?
        .collect();
    let refused: Vec<String> = resolved
        .iter()
        .filter(|a| !policy.permits(a.ip()))
        .map(|a| a.ip().to_string())
        .collect();
    if resolved.is_empty() || !refused.is_empty() {
        return Err(AddressRefused {
            host: host.to_owned(),
            addrs: refused.join(", "),
        }
        .to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_info_of_a_url_is_shown_as_stars_and_stars_given_back_keep_it() {
        for (url, shown) in [
            ("https://user:pass@example.com/hook", "https://***@example.com/hook"),
            ("https://token@example.com/h?q=a@b", "https://***@example.com/h?q=a@b"),
            ("https://example.com/a@b", "https://example.com/a@b"),
            ("https://u:p@x@example.com/", "https://***@example.com/"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let stored = "https://user:pass@example.com/hook";
        for (given, kept) in [
            ("https://***@example.com/hook2", "https://user:pass@example.com/hook2"),
            ("https://***@other.example/x", "https://***@other.example/x"),
            ("https://***@example.com:8443/x", "https://***@example.com:8443/x"),
            ("https://new:one@example.com/hook", "https://new:one@example.com/hook"),
            ("https://example.com/hook", "https://example.com/hook"),
        ] {
            assert_eq!(restore_redacted_url(given, stored), kept, "{given}");
        }
        assert_eq!(
            restore_redacted_url("https://***@example.com/", "https://example.com/"),
            "https://***@example.com/",
            "nothing stored to put back"
        );
    }

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

    /// Found by the `url_policy` fuzz target: an allowlisted IPv4-mapped
    /// IPv6 network did not open its own addresses, because they were
    /// judged in IPv4 form only.
    #[test]
    fn an_allowlisted_ipv4_mapped_network_opens_its_addresses_in_both_forms() {
        let policy = AddressPolicy {
            allow: vec!["::ffff:10.0.0.0/104".parse().unwrap()],
            https_only: false,
        };
        assert!(policy.permits(ip("::ffff:10.1.2.3")));
        assert!(policy.permits(ip("10.1.2.3")));
        assert!(!policy.permits(ip("192.168.0.1")));
        let everything = AddressPolicy {
            allow: vec!["::ffff:255.255.255.252/126".parse().unwrap()],
            https_only: false,
        };
        assert!(everything.permits(ip("::ffff:255.255.255.255")));
    }

    #[test]
    fn urls_are_checked_for_scheme_host_and_literal_addresses() {
        let open = AddressPolicy::default();
        let check = |p: &AddressPolicy, u: &str| parse_url(u).and_then(|url| p.check_url(&url));
        assert_eq!(check(&open, "https://example.com/hook"), Ok(()));
        assert_eq!(check(&open, "http://93.184.216.34/"), Ok(()));
        assert!(matches!(check(&open, "not a url"), Err(UrlError::Invalid { .. })));
        assert!(matches!(check(&open, "ftp://example.com/"), Err(UrlError::Scheme(s)) if s == "ftp"));
        assert!(matches!(
            check(&open, "http://169.254.169.254/latest"),
            Err(UrlError::Refused(_))
        ));
        assert!(matches!(
            check(&open, "http://[::ffff:10.0.0.1]/"),
            Err(UrlError::Refused(_))
        ));
        let strict = AddressPolicy {
            allow: vec![],
            https_only: true,
        };
        assert!(matches!(
            check(&strict, "http://example.com/"),
            Err(UrlError::Scheme(_))
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
