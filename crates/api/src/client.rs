//! Who is on the other end: client address, user agent, and the scheme and host it used.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are honoured only when the direct peer is a trusted
//! proxy (`ApiOptions::trusted_proxies`); from anyone else they are ignored, so a client cannot
//! pick the address its failed logins are counted under or the scheme of a token realm.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{header, request::Parts, HeaderMap};

/// An address or network (`10.0.0.0/8`, `::1`, `192.168.1.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IP address or CIDR network");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Facts about one request's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (`-` when unknown, as in tests without a socket).
    pub addr: String,
    /// `User-Agent`.
    pub user_agent: String,
    /// `http` or `https` as the client sees it.
    pub scheme: String,
    /// The host the client addressed.
    pub host: String,
    /// The path prefix the API is served below (`""` or `/registry`).
    pub prefix: String,
    /// The socket peer, when it is the client itself (not a trusted proxy).
    pub direct_peer: Option<SocketAddr>,
}

impl ClientInfo {
    /// Reads the request; `https` says whether Berth itself serves TLS.
    pub fn from_parts(parts: &Parts, trusted: &[IpNet], https: bool) -> ClientInfo {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| canonical(c.0.ip()));
        let via_proxy = peer.is_some_and(|p| trusted.iter().any(|n| n.contains(p)));
        let h = &parts.headers;
        let addr = match (peer, via_proxy) {
            (Some(p), true) => forwarded_for(h, trusted).unwrap_or(p).to_string(),
            (Some(p), false) => p.to_string(),
            (None, _) => "-".to_string(),
        };
        let forwarded_proto = via_proxy
            .then(|| text(h, "x-forwarded-proto"))
            .flatten()
            .and_then(|p| p.split(',').next().map(|s| s.trim().to_ascii_lowercase()))
            .filter(|p| p == "http" || p == "https");
        let scheme = forwarded_proto.unwrap_or_else(|| if https { "https" } else { "http" }.into());
        let host = text(h, header::HOST.as_str())
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|s| s.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or_else(|| "localhost".into());
        ClientInfo {
            addr,
            user_agent: text(h, header::USER_AGENT.as_str()).unwrap_or_default(),
            scheme,
            host,
            prefix: String::new(),
            direct_peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0)
                .filter(|_| !via_proxy),
        }
    }

    /// The client's address for events: `ip:port` when it connected directly, else the address
    /// the trusted proxy forwarded (as registry:2 reports it).
    pub fn remote(&self) -> String {
        match self.direct_peer {
            Some(p) => SocketAddr::new(canonical(p.ip()), p.port()).to_string(),
            None => self.addr.clone(),
        }
    }
}

/// The right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
fn forwarded_for(h: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let all: Vec<IpAddr> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().parse::<IpAddr>().map(canonical))
        .collect::<Result<_, _>>()
        .ok()?;
    all.into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
}

fn text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().uri("/v2/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(()).unwrap();
        let addr: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        req.into_parts().0
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn networks() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["x", "10.0.0.0/33", "::/129", "1.2.3.4/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let h = [
            ("x-forwarded-for", "6.6.6.6, 5.5.5.5"),
            ("x-forwarded-proto", "https"),
            ("host", "registry.example.com"),
            ("user-agent", "skopeo/1.9"),
        ];
        let direct =
            ClientInfo::from_parts(&parts("9.9.9.9:1000", &h), &nets(&["127.0.0.1"]), false);
        assert_eq!(direct.addr, "9.9.9.9");
        assert_eq!(direct.scheme, "http");
        assert_eq!(direct.host, "registry.example.com");
        assert_eq!(direct.user_agent, "skopeo/1.9");
        let proxied =
            ClientInfo::from_parts(&parts("127.0.0.1:1000", &h), &nets(&["127.0.0.1"]), false);
        assert_eq!(proxied.addr, "5.5.5.5", "right-most untrusted hop");
        assert_eq!(proxied.scheme, "https");
        let chain = ClientInfo::from_parts(
            &parts("127.0.0.1:1000", &h),
            &nets(&["127.0.0.1", "5.5.5.0/24"]),
            true,
        );
        assert_eq!(chain.addr, "6.6.6.6");
        let junk = ClientInfo::from_parts(
            &parts(
                "127.0.0.1:1000",
                &[
                    ("x-forwarded-for", "not-an-ip"),
                    ("x-forwarded-proto", "gopher"),
                ],
            ),
            &nets(&["127.0.0.1"]),
            true,
        );
        assert_eq!(
            (junk.addr.as_str(), junk.scheme.as_str()),
            ("127.0.0.1", "https")
        );
    }
}
