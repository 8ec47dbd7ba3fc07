//! Which URLs a webhook may call: SSRF protection at registration and at every delivery.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::WebhookError;

/// Longest endpoint URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;

/// The shape of an endpoint URL, as the OpenAPI document states it and [`TargetPolicy::check`]
/// enforces it: `http(s)://`, an ASCII host name (a name with other characters is sent in its
/// `xn--` form) or an IP literal, an optional port, and visible ASCII after it. The URL parser
/// alone would take more (`http://0*/`), so the shape is checked first.
pub const URL_PATTERN: &str = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#][!-~]*)?$";

static URL_SHAPE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(URL_PATTERN).expect("a valid pattern"));

/// Whether private targets may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Loopback, private, link-local and the other inward ranges are allowed (development and
    /// tests, where the receiver runs on the same machine).
    pub allow_private: bool,
}

/// Whether an address is one a webhook must not reach from outside: loopback, private
/// (RFC 1918), link-local (cloud metadata lives there), shared/CGNAT, unique-local,
/// multicast, broadcast, documentation or unspecified, IPv4-mapped ones included.
pub fn is_inward(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_inward(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

impl TargetPolicy {
    /// Checks a URL as sent: `http(s)`, a host, at most [`MAX_URL_CHARS`], no credentials,
    /// and (unless private targets are allowed) a host that is not, and does not resolve to,
    /// an inward address. A name that does not resolve is refused too.
    pub async fn check(&self, url: &str) -> Result<reqwest::Url, WebhookError> {
        if url.chars().count() > MAX_URL_CHARS {
            return Err(WebhookError::Target(
                "must be at most 2048 characters".into(),
            ));
        }
        if !URL_SHAPE.is_match(url) {
            return Err(WebhookError::Target(
                "must be an http(s) URL with an ASCII host name or IP address, an optional \
                 port, and visible ASCII characters after it"
                    .into(),
            ));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| WebhookError::Target("must be an absolute http(s) URL".into()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::Target("must be an http or https URL".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(WebhookError::Target(
                "must not carry credentials; each delivery is signed instead".into(),
            ));
        }
        let Some(host) = parsed.host_str() else {
            return Err(WebhookError::Target("must name a host".into()));
        };
        if self.allow_private {
            return Ok(parsed);
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| WebhookError::Target(format!("host {host:?} does not resolve")))?
                .collect(),
        };
        if addresses.is_empty() || addresses.iter().any(|a| is_inward(a.ip())) {
            return Err(WebhookError::Target(
                "must not point at a loopback, private, link-local or other internal address"
                    .into(),
            ));
        }
        Ok(parsed)
    }

    /// The resolver of the delivery client: it drops inward addresses unless they are
    /// allowed, so a name that resolves inward at delivery time is not reached.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            allow_private: self.allow_private,
        })
    }
}

/// A DNS resolver that refuses inward addresses (see [`is_inward`]).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_inward(a.ip()))
                .collect();
            if found.is_empty() {
                return Err("the host resolves to no address a webhook may reach".into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_inward_addresses_then_each_is_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_inward(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_inward(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn given_production_rules_when_urls_are_checked_then_inward_and_odd_ones_are_refused() {
        let strict = TargetPolicy {
            allow_private: false,
        };
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5/",
            "http://localhost/hook",
            "ftp://example.com/hook",
            "file:///etc/passwd",
            "https://user:pass@93.184.216.34/hook",
            "not a url",
            "HTTP://0*",
            "http://exämple.com/",
            "http://example.com:65536/",
        ] {
            assert!(strict.check(url).await.is_err(), "{url}");
        }
        assert!(strict.check("https://93.184.216.34/hook").await.is_ok());
        let relaxed = TargetPolicy {
            allow_private: true,
        };
        assert!(relaxed.check("http://127.0.0.1:8080/hook").await.is_ok());
        assert!(relaxed.check("ftp://127.0.0.1/hook").await.is_err());
    }
}
