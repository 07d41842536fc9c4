//! Endpoint URL and address checks: never panic; an IPv4-mapped IPv6
//! address is judged as its IPv4 address; https-only never lets through
//! what the open policy refuses; an allowlisted network opens its addresses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outhook_dispatcher::IpNet;
use outhook_dispatcher::http::{AddressPolicy, parse_url};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    url: &'a str,
    v4: [u8; 4],
    v6: [u8; 16],
    prefix: u8,
}

fuzz_target!(|input: Input<'_>| {
    let open = AddressPolicy::default();
    let strict = AddressPolicy {
        https_only: true,
        ..AddressPolicy::default()
    };
    if let Ok(url) = parse_url(input.url) {
        let open_ok = open.check_url(&url).is_ok();
        let strict_ok = strict.check_url(&url).is_ok();
        assert!(!strict_ok || open_ok, "https-only allowed what the open policy refused: {url}");
    }

    let v4 = Ipv4Addr::from(input.v4);
    let mapped = IpAddr::V6(v4.to_ipv6_mapped());
    assert_eq!(open.permits(IpAddr::V4(v4)), open.permits(mapped), "{v4} and {mapped} judged differently");

    let v6 = IpAddr::V6(Ipv6Addr::from(input.v6));
    if let Ok(net) = IpNet::new(v6, input.prefix % 129) {
        let allowing = AddressPolicy {
            allow: vec![net],
            ..AddressPolicy::default()
        };
        assert!(allowing.permits(v6), "{v6} not opened by {net}");
        assert_eq!(
            allowing.permits(IpAddr::V4(v4)),
            allowing.permits(mapped),
            "{v4} and {mapped} judged differently with {net} allowed"
        );
    }
});
