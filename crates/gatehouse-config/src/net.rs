//! The network-facing settings beyond `listen`: `trusted_proxies` (addresses and CIDR
//! blocks whose forwarding headers are believed), `metrics` (the separate metrics and
//! status listener) and the connection limits `keep_alive` and `max_connections`.

use std::net::{IpAddr, SocketAddr};

use crate::diagnostic::Diags;
use crate::node::{Node, Value};
use crate::validate::{Fields, fields, found};
use crate::{MAX_CONNECTIONS_CEILING, Metrics, ProxyNet};

/// The keys of `metrics`.
const METRICS_KEYS: &[&str] = &["listen"];

impl ProxyNet {
    /// Whether `ip` is in this block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`)
    /// matches as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`. Host bits set below the prefix
/// (`10.0.0.1/8`) are refused: they are usually a typo for another block.
pub fn parse_net(text: &str) -> Result<ProxyNet, String> {
    let t = text.trim();
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    let addr: IpAddr =
        addr.parse().map_err(|_| format!("`{}` is not an IP address", addr.escape_debug()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                return Err(format!(
                    "`/{}` is not a prefix length from 0 to {max}",
                    p.escape_debug()
                ));
            }
        },
    };
    let net = ProxyNet { addr, prefix };
    let first = ProxyNet { addr, prefix: max };
    // The block's own address must be its first: no host bits below the prefix.
    let start = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    if !first.contains(start) {
        return Err(format!(
            "`{t}` has host bits set below the prefix: the block is `{start}/{prefix}`"
        ));
    }
    Ok(net)
}

/// `trusted_proxies`: a list of addresses and CIDR blocks.
pub(crate) fn trusted_proxies(n: &Node, d: &mut Diags) -> Vec<ProxyNet> {
    const HINT: &str = "write addresses or CIDR blocks, like `trusted_proxies: [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]`";
    let Value::Seq(items) = &n.value else {
        d.error_hint(n.pos, format!("`trusted_proxies` must be a list, found {}", found(n)), HINT);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(text) = item.text() else {
            d.error_hint(
                item.pos,
                format!("a `trusted_proxies` entry must be a string, found {}", found(item)),
                HINT,
            );
            continue;
        };
        match parse_net(text) {
            Ok(net) => out.push(net),
            Err(why) => d.error_hint(item.pos, format!("`trusted_proxies`: {why}"), HINT),
        }
    }
    out
}

/// `metrics: {listen: ADDRESS}`.
pub(crate) fn metrics(n: &Node, d: &mut Diags) -> Option<Metrics> {
    let f: Fields<'_> = fields(n, "`metrics`", METRICS_KEYS, d)?;
    let Some(l) = f.get("listen") else {
        d.error_hint(
            n.pos,
            "`metrics` needs `listen`",
            "write `metrics: {listen: \"127.0.0.1:9090\"}` (remove `metrics` to serve none)",
        );
        return None;
    };
    let Some(text) = l.text() else {
        d.error(l.pos, format!("`metrics.listen` must be a string, found {}", found(l)));
        return None;
    };
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => {
            if !addr.ip().is_loopback() {
                d.warning_hint(
                    l.pos,
                    format!("`metrics.listen` {addr} is not a loopback address: the metrics and status page (plugin paths, counts) are reachable from other hosts"),
                    "keep it on 127.0.0.1 or [::1] and scrape through a tunnel or a proxy with access control",
                );
            }
            Some(Metrics { listen: addr })
        }
        Err(_) => {
            d.error_hint(
                l.pos,
                format!("`{}` is not a socket address", text.escape_debug()),
                "write IP:PORT, like `127.0.0.1:9090`",
            );
            None
        }
    }
}

/// `max_connections`: 1..=[`MAX_CONNECTIONS_CEILING`].
pub(crate) fn max_connections(n: &Node, d: &mut Diags) -> Option<usize> {
    crate::limits::count(n, "max_connections", 1, MAX_CONNECTIONS_CEILING as u64, d)
        .and_then(|v| usize::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Expected, check_errors_table, fixture};

    #[test]
    fn nets_parse_and_match() {
        // (text, Ok(addresses inside, addresses outside) or Err(message part))
        type Case = (
            &'static str,
            Result<(&'static [&'static str], &'static [&'static str]), &'static str>,
        );
        let cases: &[Case] = &[
            ("127.0.0.1", Ok((&["127.0.0.1", "::ffff:127.0.0.1"], &["127.0.0.2", "::1"]))),
            ("10.0.0.0/8", Ok((&["10.0.0.1", "10.255.255.255"], &["11.0.0.0", "9.255.255.255"]))),
            ("0.0.0.0/0", Ok((&["1.2.3.4", "255.255.255.255"], &["::1"]))),
            ("192.168.1.128/25", Ok((&["192.168.1.200"], &["192.168.1.127"]))),
            ("::1", Ok((&["::1"], &["::2", "127.0.0.1"]))),
            ("fd00::/8", Ok((&["fd12::1"], &["fe80::1"]))),
            (" 10.1.2.3/32 ", Ok((&["10.1.2.3"], &["10.1.2.4"]))),
            ("10.0.0.1/8", Err("host bits set below the prefix: the block is `10.0.0.0/8`")),
            ("10.0.0.0/33", Err("`/33` is not a prefix length from 0 to 32")),
            ("::/129", Err("from 0 to 128")),
            ("10.0.0.0/x", Err("`/x` is not a prefix length")),
            ("localhost", Err("`localhost` is not an IP address")),
            ("10.0.0.0:80", Err("is not an IP address")),
        ];
        for (text, want) in cases {
            match (parse_net(text), want) {
                (Ok(net), Ok((inside, outside))) => {
                    for ip in *inside {
                        assert!(
                            net.contains(ip.parse().expect("a test address")),
                            "{text} should hold {ip}"
                        );
                    }
                    for ip in *outside {
                        assert!(
                            !net.contains(ip.parse().expect("a test address")),
                            "{text} should not hold {ip}"
                        );
                    }
                }
                (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e:?} lacks {part:?}"),
                (got, _) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn network_keys_errors_table() {
        let cases: &[(&str, Expected)] = &[
            (
                "aliases: []\ntrusted_proxies: 10.0.0.1\n",
                &[(2, 18, "`trusted_proxies` must be a list")],
            ),
            (
                "aliases: []\ntrusted_proxies:\n  - 10.0.0.1\n  - 10.0.0.1/8\n  - [a]\n  - nope\n",
                &[
                    (4, 5, "host bits set below the prefix"),
                    (5, 5, "must be a string, found a list"),
                    (6, 5, "`nope` is not an IP address"),
                ],
            ),
            ("aliases: []\nmetrics: 9090\n", &[(2, 10, "`metrics` must be a mapping of keys")]),
            ("aliases: []\nmetrics: {}\n", &[(2, 10, "`metrics` needs `listen`")]),
            ("aliases: []\nmetrics: {listen: x}\n", &[(2, 19, "`x` is not a socket address")]),
            ("aliases: []\nmetrics: {listen: [1]}\n", &[(2, 19, "must be a string, found a list")]),
            (
                "aliases: []\nmetrics: {listen: \"127.0.0.1:9090\", lsten: 1}\n",
                &[(2, 37, "unknown key `lsten` in `metrics`")],
            ),
            ("aliases: []\nkeep_alive: 0s\n", &[(2, 13, "`keep_alive` must be more than 0")]),
            ("aliases: []\nkeep_alive: soon\n", &[(2, 13, "`keep_alive` is not a duration")]),
            ("aliases: []\nmax_connections: 0\n", &[(2, 18, "between 1 and 1000000, found 0")]),
            ("aliases: []\nmax_connections: many\n", &[(2, 18, "must be a whole number")]),
        ];
        check_errors_table(cases);
    }

    #[test]
    fn network_keys_values_and_defaults() {
        let fx = fixture();
        let c = fx.ok("aliases: []\n").config;
        assert_eq!(c.trusted_proxies, Vec::new());
        assert_eq!(c.metrics, None);
        assert_eq!(c.keep_alive, std::time::Duration::from_secs(5));
        assert_eq!(c.max_connections, crate::DEFAULT_MAX_CONNECTIONS);
        let loaded = fx.ok(
            "aliases: []\ntrusted_proxies: [127.0.0.1, \"10.0.0.0/8\"]\nmetrics: {listen: \"127.0.0.1:9090\"}\nkeep_alive: 15s\nmax_connections: 100\n",
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(
            c.metrics,
            Some(Metrics { listen: "127.0.0.1:9090".parse().expect("a test address") })
        );
        assert_eq!(c.keep_alive, std::time::Duration::from_secs(15));
        assert_eq!(c.max_connections, 100);
        let loaded = fx.ok("aliases: []\nmetrics: {listen: \"0.0.0.0:9090\"}\n");
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].message.contains("not a loopback address"));
    }
}
