//! Trusted proxies: who the client is, and whether it spoke HTTPS, when the peer is a
//! proxy the operator trusts (`trusted_proxies`). Pure functions over header values, as
//! Apache's mod_remoteip: the forwarding chain is walked from the nearest hop back while
//! the hops are trusted proxies; the first untrusted one is the client. Headers from a peer
//! that is not trusted are ignored, for the address and the scheme alike.
//!
//! `Forwarded` (RFC 7239) wins over `X-Forwarded-For` / `X-Forwarded-Proto` when a trusted
//! peer sent it. The scheme is the `proto=` of the element naming the client, or the last
//! (nearest proxy's) `X-Forwarded-Proto` value.
//!
//! No allocation: the header values are walked from the right with `rsplit`.

use std::net::{IpAddr, SocketAddr};

use gatehouse_config::ProxyNet;

/// What the request's origin is, after trusted proxies are believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (the peer's own when nothing is believed).
    pub ip: IpAddr,
    /// `Some(true)` for `https`, `Some(false)` for `http`, as a trusted proxy said; `None`:
    /// the connection's own scheme stands.
    pub https: Option<bool>,
}

impl Origin {
    /// The connection's own peer, believed as it is (no trusted proxy in between); the
    /// unspecified address when there is no peer (a request made in a test).
    pub fn direct(req: &actix_web::HttpRequest) -> Origin {
        let ip = req.peer_addr().map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| p.ip());
        Origin { ip, https: None }
    }
}

/// Whether `ip` is one of the trusted proxies.
pub(crate) fn trusted(ip: IpAddr, nets: &[ProxyNet]) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// A node of a forwarding header: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`, quoted or
/// not. `unknown`, obfuscated (`_x`) and malformed nodes give `None`.
pub(crate) fn parse_node(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Some(rest) = t.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    t.parse::<IpAddr>().ok().or_else(|| t.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// A scheme value: `https` or `http` (any case), else `None`.
fn scheme(text: &str) -> Option<bool> {
    let t = text.trim().trim_matches('"');
    if t.eq_ignore_ascii_case("https") {
        Some(true)
    } else if t.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// Walks `hops` (nearest first) from `peer`: each trusted hop passes to the one before it.
/// Returns the client and the index of the hop it came from (None: the peer itself).
fn walk<'a>(
    peer: IpAddr,
    nets: &[ProxyNet],
    hops: impl Iterator<Item = &'a str>,
) -> (IpAddr, Option<usize>) {
    let mut client = (peer, None);
    for (i, hop) in hops.enumerate() {
        if !trusted(client.0, nets) {
            break;
        }
        match parse_node(hop) {
            Some(ip) => client = (ip, Some(i)),
            // `unknown` or garbage: the last proxy that could be named is the client.
            None => break,
        }
    }
    client
}

/// The `for=` and `proto=` of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn element(text: &str) -> (Option<&str>, Option<&str>) {
    let (mut for_, mut proto) = (None, None);
    for pair in text.split(';') {
        if let Some((k, v)) = pair.split_once('=') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("for") {
                for_ = Some(v);
            } else if k.eq_ignore_ascii_case("proto") {
                proto = Some(v);
            }
        }
    }
    (for_, proto)
}

/// The origin of a request from `peer`, given the values of its `Forwarded`,
/// `X-Forwarded-For` and `X-Forwarded-Proto` header lines in the order received.
pub(crate) fn origin<'a, F, X, P>(
    peer: IpAddr,
    nets: &[ProxyNet],
    forwarded: F,
    xff: X,
    xfp: P,
) -> Origin
where
    F: DoubleEndedIterator<Item = &'a str>,
    X: DoubleEndedIterator<Item = &'a str>,
    P: DoubleEndedIterator<Item = &'a str>,
{
    let none = Origin { ip: peer, https: None };
    if nets.is_empty() || !trusted(peer, nets) {
        return none;
    }
    let mut forwarded = forwarded.rev().flat_map(|v| v.rsplit(',')).peekable();
    if forwarded.peek().is_some() {
        let elements = forwarded.map(element);
        let mut client = Origin { ip: peer, https: None };
        for (for_, proto) in elements {
            if !trusted(client.ip, nets) {
                break;
            }
            let Some(ip) = for_.and_then(parse_node) else { break };
            client = Origin { ip, https: proto.and_then(scheme) };
        }
        return client;
    }
    let (ip, _) = walk(peer, nets, xff.rev().flat_map(|v| v.rsplit(',')));
    let https = xfp.rev().flat_map(|v| v.rsplit(',')).next().and_then(scheme);
    Origin { ip, https }
}

/// [`origin`] for an actix request's headers.
pub fn origin_of(
    peer: IpAddr,
    nets: &[ProxyNet],
    headers: &actix_web::http::header::HeaderMap,
) -> Origin {
    let values = |name: &'static str| headers.get_all(name).filter_map(|v| v.to_str().ok());
    origin(peer, nets, values("forwarded"), values("x-forwarded-for"), values("x-forwarded-proto"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::parse_net;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a test address")
    }

    #[test]
    fn nodes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4 ", Some("1.2.3.4")),
            ("1.2.3.4:8080", Some("1.2.3.4")),
            ("\"[2001:db8::1]:4711\"", Some("2001:db8::1")),
            ("[::1]", Some("::1")),
            ("::1", Some("::1")),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
            ("1.2.3", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_node(text), want.map(ip), "{text:?}");
        }
    }

    /// (peer, Forwarded lines, X-Forwarded-For lines, X-Forwarded-Proto lines) → origin.
    #[test]
    fn origins_table() {
        let nets: Vec<ProxyNet> = ["127.0.0.1", "10.0.0.0/8"]
            .iter()
            .map(|t| parse_net(t).expect("a test block"))
            .collect();
        type Case = (
            &'static str,
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
            &'static str,
            Option<bool>,
        );
        let cases: &[Case] = &[
            // an untrusted peer: everything ignored
            ("192.0.2.9", &[], &["1.1.1.1"], &["https"], "192.0.2.9", None),
            ("192.0.2.9", &["for=1.1.1.1;proto=https"], &[], &[], "192.0.2.9", None),
            // a trusted peer without headers
            ("127.0.0.1", &[], &[], &[], "127.0.0.1", None),
            // one proxy
            ("127.0.0.1", &[], &["203.0.113.7"], &["https"], "203.0.113.7", Some(true)),
            ("127.0.0.1", &[], &["203.0.113.7"], &["HTTP"], "203.0.113.7", Some(false)),
            ("127.0.0.1", &[], &["203.0.113.7"], &["gopher"], "203.0.113.7", None),
            // a chain: trusted hops are skipped from the right; a forged left part is not believed
            ("127.0.0.1", &[], &["6.6.6.6, 203.0.113.7, 10.1.1.1"], &[], "203.0.113.7", None),
            ("127.0.0.1", &[], &["6.6.6.6", "203.0.113.7", "10.1.1.1"], &[], "203.0.113.7", None),
            // every hop trusted: the leftmost
            ("10.0.0.1", &[], &["10.0.0.2, 10.0.0.3"], &[], "10.0.0.2", None),
            // garbage stops the walk at the last named proxy
            ("127.0.0.1", &[], &["1.1.1.1, unknown, 10.9.9.9"], &[], "10.9.9.9", None),
            ("127.0.0.1", &[], &["nonsense"], &[], "127.0.0.1", None),
            // the last X-Forwarded-Proto value is the nearest proxy's
            ("127.0.0.1", &[], &["1.1.1.1"], &["http, https"], "1.1.1.1", Some(true)),
            // Forwarded wins over X-Forwarded-*
            (
                "127.0.0.1",
                &["for=203.0.113.7;proto=https"],
                &["1.1.1.1"],
                &["http"],
                "203.0.113.7",
                Some(true),
            ),
            (
                "127.0.0.1",
                &["for=\"[2001:db8::1]:4711\";proto=http"],
                &[],
                &[],
                "2001:db8::1",
                Some(false),
            ),
            (
                "127.0.0.1",
                &["for=6.6.6.6;proto=http, For=203.0.113.7;Proto=https, for=10.2.2.2"],
                &[],
                &[],
                "203.0.113.7",
                Some(true),
            ),
            ("127.0.0.1", &["for=unknown"], &[], &[], "127.0.0.1", None),
            ("127.0.0.1", &["by=10.0.0.1"], &[], &[], "127.0.0.1", None),
            // an IPv4-mapped peer is the IPv4 address
            ("::ffff:127.0.0.1", &[], &["203.0.113.7"], &[], "203.0.113.7", None),
        ];
        for &(peer, fwd, xff, xfp, want_ip, want_https) in cases {
            let got = origin(
                ip(peer),
                &nets,
                fwd.iter().copied(),
                xff.iter().copied(),
                xfp.iter().copied(),
            );
            assert_eq!(
                got,
                Origin { ip: ip(want_ip), https: want_https },
                "{peer} {fwd:?} {xff:?} {xfp:?}"
            );
        }
        // no trusted proxies configured: nothing is believed
        let got =
            origin(ip("127.0.0.1"), &[], [].into_iter(), ["1.1.1.1"].into_iter(), [].into_iter());
        assert_eq!(got.ip, ip("127.0.0.1"));
    }
}
