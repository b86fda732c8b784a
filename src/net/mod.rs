//! Outbound requests the gateway makes on others' say-so: clients' JWKS URLs, OpenID
//! Connect issuers' JWKS URLs and patients' webhooks. Any of them could name an address
//! inside the deployment (server-side request forgery), so every one goes through an
//! [`OutboundClient`]:
//!
//! - the host is resolved by [`GuardedResolver`], which drops every special-purpose address
//!   ([`special::classify`]: loopback, private, link-local, shared, multicast, unspecified,
//!   documentation, reserved; IPv4-mapped, NAT64 and 6to4 forms judged by the IPv4 address
//!   inside) unless an operator allow-listed its network (`outbound.allowed_networks`);
//! - the connection goes to exactly the addresses the resolver returned, so a name cannot
//!   resolve to a public address for the check and to a private one for the connection (DNS
//!   rebinding); an IP literal in a URL, which never reaches a resolver, is checked by
//!   [`OutboundGuard::check_url`] before the request is built;
//! - redirects are not followed and proxies from the environment are ignored (a proxy would
//!   resolve the name itself, past the check).
//!
//! A refusal is an [`AddressRefused`] with a stable code, found in a reqwest error's source
//! chain by [`refusal_in`]. No connection is attempted to a refused address.

pub mod special;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

pub use special::{AddressClass, classify};

/// Code of every refusal, for clients and logs.
pub const ADDRESS_REFUSED: &str = "outbound_address_refused";

/// An outbound request refused because of where it would go; names the class, never the URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("outbound_address_refused: {detail}")]
pub struct AddressRefused {
    /// The first refused address's class, when one was found.
    pub class: Option<AddressClass>,
    /// What was refused, without the URL's path or query.
    pub detail: String,
}

/// The address policy: refuse special-purpose addresses outside the allow-list.
#[derive(Debug, Clone, Default)]
pub struct OutboundGuard {
    allowed: Arc<Vec<IpNet>>,
}

impl OutboundGuard {
    /// A guard that allows the special-purpose addresses inside `allowed` and no others.
    pub fn new(allowed: Vec<IpNet>) -> OutboundGuard {
        OutboundGuard {
            allowed: Arc::new(allowed),
        }
    }

    /// The guard the settings describe (`outbound.allowed_networks`, already validated).
    pub fn from_settings(settings: &crate::config::OutboundSettings) -> anyhow::Result<Self> {
        let allowed = crate::config::parse_networks(&settings.allowed_networks)
            .map_err(|reason| anyhow::anyhow!("outbound.allowed_networks: {reason}"))?;
        Ok(OutboundGuard::new(allowed))
    }

    /// Whether `ip` may be reached.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        let ip = canonical(ip);
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(AddressRefused {
            class: Some(class),
            detail: format!("{ip} is a {} address", class.code()),
        })
    }

    /// Checks a URL whose host is an IP literal (a name is checked when it is resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), AddressRefused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(AddressRefused {
                class: None,
                detail: "the URL has no host".into(),
            }),
        }
    }

    /// The addresses of `host` that may be reached; an error when none may.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, AddressRefused> {
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| AddressRefused {
                class: None,
                detail: "the name does not resolve".into(),
            })?;
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for addr in found {
            match self.check_ip(addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        if allowed.is_empty() {
            return Err(first_refusal.unwrap_or(AddressRefused {
                class: None,
                detail: "the name has no addresses".into(),
            }));
        }
        Ok(allowed)
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address, for allow-list matching too.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A reqwest resolver that returns only the addresses the guard allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: OutboundGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs = guard.resolve(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Settings of an outbound HTTP client.
#[derive(Debug, Clone)]
pub struct OutboundOptions {
    /// TLS: roots and provider.
    pub tls: rustls::ClientConfig,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time for the whole request.
    pub timeout: Duration,
}

/// An HTTPS client that can reach only what its guard allows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    guard: OutboundGuard,
}

impl OutboundClient {
    /// Builds the client: https only, the guarded resolver, no redirects, no proxy.
    pub fn new(guard: OutboundGuard, options: OutboundOptions) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(options.tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(concat!("consentgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OutboundClient { client, guard })
    }

    /// A request to `url`, refused before anything is sent when its host is a refused IP
    /// literal or the URL does not parse.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, AddressRefused> {
        let parsed = reqwest::Url::parse(url).map_err(|_| AddressRefused {
            class: None,
            detail: "the URL does not parse".into(),
        })?;
        self.guard.check_url(&parsed)?;
        Ok(self.client.request(method, parsed))
    }

    /// The guard this client applies.
    pub fn guard(&self) -> &OutboundGuard {
        &self.guard
    }
}

/// The refusal behind a failed request, if the guard caused it.
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<AddressRefused> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> OutboundGuard {
        let nets = allowed.iter().map(|s| s.parse().unwrap()).collect();
        OutboundGuard::new(nets)
    }

    #[test]
    fn allow_list_opens_exactly_its_networks() {
        let g = guard(&["127.0.0.1/32", "10.20.0.0/16"]);
        assert!(g.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check_ip("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check_ip("10.20.3.4".parse().unwrap()).is_ok());
        let refused = g.check_ip("127.0.0.2".parse().unwrap()).unwrap_err();
        assert_eq!(refused.class, Some(AddressClass::Loopback));
        assert!(g.check_ip("10.21.0.1".parse().unwrap()).is_err());
        assert!(g.check_ip("::1".parse().unwrap()).is_err());
        assert!(g.check_ip("93.184.215.14".parse().unwrap()).is_ok());
    }

    #[test]
    fn literal_hosts_are_checked_without_resolving() {
        let g = guard(&[]);
        for url in [
            "https://127.0.0.1/x",
            "https://[::1]:8443/x",
            "https://[::ffff:169.254.169.254]/latest/meta-data",
            "https://0.0.0.0/",
            "https://2130706433/",
            "https://0x7f.1/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(g.check_url(&parsed).is_err(), "{url}");
        }
        let public = reqwest::Url::parse("https://93.184.215.14/").unwrap();
        assert!(g.check_url(&public).is_ok());
        let named = reqwest::Url::parse("https://example.org/").unwrap();
        assert!(
            g.check_url(&named).is_ok(),
            "names are checked on resolution"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let refused = guard(&[]).resolve("localhost", 443).await.unwrap_err();
        assert_eq!(refused.class, Some(AddressClass::Loopback));
        // Allow-listed, only the allowed family comes back: the connection is pinned to it.
        let addrs = guard(&["127.0.0.0/8"])
            .resolve("localhost", 443)
            .await
            .unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_ipv4() && a.ip().is_loopback())
        );
    }

    #[tokio::test]
    async fn the_refusal_is_found_in_the_error_chain_and_nothing_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = OutboundClient::new(
            guard(&[]),
            OutboundOptions {
                tls,
                connect_timeout: Duration::from_secs(2),
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        let literal = client.request(reqwest::Method::GET, &format!("https://127.0.0.1:{port}/"));
        assert!(literal.is_err(), "refused before a request exists");
        let named = client
            .request(reqwest::Method::GET, &format!("https://localhost:{port}/"))
            .unwrap()
            .send()
            .await
            .unwrap_err();
        let refused = refusal_in(&named).expect("the guard's refusal is in the chain");
        assert_eq!(refused.class, Some(AddressClass::Loopback));
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "no connection was made"
        );
    }
}
