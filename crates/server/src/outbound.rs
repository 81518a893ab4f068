//! Requests creditd sends to addresses its users give (customers' upstreams, operators' webhook
//! endpoints): which addresses are the operator's own network, and a client that never reaches
//! them unless the operator allows it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Whether an address is one a user's URL may not point to: loopback,
/// private, link-local, unspecified, shared (100.64/10), unique-local or
/// multicast — the operator's own network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Whether a URL's host is written as the operator's own network: a
/// private address, or a name of one label (`localhost`, or any name the
/// resolver completes with its search domains inside that network). Other
/// names are checked when they are resolved, by [`PublicOnly`].
pub fn host_is_private(url: &url::Url) -> Option<bool> {
    Some(match url.host()? {
        url::Host::Ipv4(ip) => is_private(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => is_private(IpAddr::V6(ip)),
        url::Host::Domain(name) => !name.trim_end_matches('.').contains('.'),
    })
}

/// Resolves host names and refuses private addresses, so that a name that
/// resolves (or later re-resolves) into the operator's network is never
/// reached.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// A client for users' addresses: no redirects followed, private addresses
/// refused unless `allow_private`, connecting within 10 s and waiting at
/// most `read_timeout` between bytes.
pub fn client(allow_private: bool, read_timeout: Duration) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build().expect("an HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_network_is_private_and_the_internet_is_not() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
        let host = |u: &str| host_is_private(&url::Url::parse(u).unwrap());
        assert_eq!(host("http://localhost:8080/x"), Some(true));
        assert_eq!(host("https://hooks.example.com/x"), Some(false));
        assert_eq!(host("http://[::1]/"), Some(true));
    }
}
