//! The SSRF guard for subscription endpoints (URLs a device hands us): `https` to public
//! addresses only, unless the endpoint's `host:port` matches `allowed_endpoints`. IP literals
//! are checked when a device is bound; host names again after DNS resolution at each send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A checked endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// `https://host[:port]`: the VAPID audience.
    pub origin: String,
    pub host: String,
    pub port: u16,
    /// Matched `allowed_endpoints` (no address check).
    pub allowed: bool,
}

/// Checks an endpoint URL against the guard.
pub fn check(url: &str, allowed: &[String]) -> Result<Endpoint, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("endpoint is not a URL: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return Err(format!("endpoint must be an https URL, not {scheme:?}")),
    };
    let host = uri
        .host()
        .ok_or("endpoint has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let origin = format!("{scheme}://{authority}");
    let allowed = allowed
        .iter()
        .any(|glob| matches(glob, &format!("{host}:{port}")));
    if !allowed {
        if scheme != "https" {
            return Err("endpoint must be https (only allowed_endpoints may be http)".into());
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !is_public(ip) {
                return Err(format!("endpoint address {ip} is not public"));
            }
        }
    }
    Ok(Endpoint {
        url: url.to_string(),
        origin,
        host,
        port,
        allowed,
    })
}

/// Resolves a host name and refuses it if any address it has is not public (a name pointing
/// inside the network is as much an SSRF as an address literal).
pub async fn resolve_public(endpoint: &Endpoint) -> Result<(), String> {
    if endpoint.allowed || endpoint.host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", endpoint.host))?
        .collect();
    match addrs.iter().find(|a| !is_public(a.ip())) {
        Some(a) => Err(format!(
            "endpoint host {} resolves to {} which is not public",
            endpoint.host,
            a.ip()
        )),
        None if addrs.is_empty() => Err(format!("{} has no address", endpoint.host)),
        None => Ok(()),
    }
}

/// Whether an address is reachable on the public internet (not loopback, private,
/// link-local, cloud metadata, carrier-grade NAT, multicast, documentation or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

/// `*` matches any run of characters; everything else itself (ASCII, case-insensitive).
fn matches(glob: &str, text: &str) -> bool {
    let (glob, text) = (glob.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_passes_and_inside_addresses_do_not() {
        let ok = check("https://fcm.googleapis.com/fcm/send/abc", &[]).expect("public");
        assert_eq!(ok.origin, "https://fcm.googleapis.com");
        assert_eq!(ok.port, 443);
        for bad in [
            "http://push.example.com/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:192.168.0.1]/x",
            "https://100.64.0.1/x",
            "ftp://push.example.com/x",
            "not a url",
        ] {
            assert!(check(bad, &[]).is_err(), "{bad} must be refused");
        }
        assert!(check("https://8.8.8.8/x", &[]).is_ok());
    }

    #[test]
    fn allowed_endpoints_may_be_http_and_private() {
        let allowed = vec![
            "127.0.0.1:*".to_string(),
            "*.internal.example:8443".to_string(),
        ];
        let e = check("http://127.0.0.1:4000/push/1", &allowed).expect("allowed");
        assert!(e.allowed);
        assert_eq!(e.origin, "http://127.0.0.1:4000");
        assert!(check("https://push.internal.example:8443/a", &allowed).is_ok());
        assert!(check("http://push.internal.example:80/a", &allowed).is_err());
        assert!(check("http://127.0.0.2:4000/a", &allowed).is_err());
        assert!(matches("a*c*e", "abcde"));
        assert!(!matches("a*c", "abd"));
    }

    #[tokio::test]
    async fn names_resolving_inside_are_refused_at_send_time() {
        let e = check("https://localhost/x", &[]).expect("a name passes at bind time");
        assert!(
            resolve_public(&e).await.is_err(),
            "localhost resolves to loopback"
        );
    }
}
