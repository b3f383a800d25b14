//! Network groups: which addresses are "the same network" for diversity and bucketing.
//!
//! IPv4 addresses group by /16 and IPv6 by /32, as in Bitcoin Core, so one operator with many
//! addresses in one range cannot fill all of a node's slots. Loopback addresses are each their
//! own group (address and port), so a test network of many nodes on one host still gets
//! diverse outbound connections — but only where local addresses are allowed at all (see
//! `netgroup`'s `local_distinct`); elsewhere all loopback is one group.
//!
//! Also the canonical form of an address (IPv4-mapped IPv6 is IPv4) and the keys that per-host
//! limits count by: one IPv4 address, or one IPv6 /64 (what one host is usually given).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack listener reports for an
/// IPv4 peer) as plain IPv4; every other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// The key per-host limits count by: an IPv4 address, or the /64 of an IPv6 address (an IPv6
/// host can pick any address in its /64, so counting exact addresses would be no limit).
pub fn host_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Whether `ip` is reachable across the internet: not unspecified, loopback, private
/// (RFC 1918, RFC 4193), shared (RFC 6598), link-local, multicast, broadcast, reserved or a
/// documentation range. Gossip of anything else is dropped unless the network allows local
/// addresses (regtest).
pub fn is_routable(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 2)
                || (a == 198 && b == 51 && c == 100)
                || (a == 203 && b == 0 && c == 113)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] & 0xe000) != 0x2000)
        }
    }
}

/// An address range, `a.b.c.d/n` or `x:y::/n` (a single address is its full-length range),
/// held canonical: an IPv4-mapped IPv6 address or range is IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    base: IpAddr,
    prefix: u8,
}

impl Subnet {
    /// Parses `addr` or `addr/prefix`; the bits below the prefix must be zero.
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let parsed: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        let mapped_v4 = matches!(parsed, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let base = canonical_ip(parsed);
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let p: u8 = p
                    .parse()
                    .map_err(|_| format!("'{p}' is not a prefix length"))?;
                // A prefix written against ::ffff:a.b.c.d counts the 96 mapped bits.
                let p = if mapped_v4 {
                    p.checked_sub(96)
                        .ok_or("a prefix shorter than ::ffff:0:0/96 is not an IPv4 range")?
                } else {
                    p
                };
                if p > max {
                    return Err(format!("prefix /{p} is longer than the address"));
                }
                p
            }
        };
        let subnet = Subnet { base, prefix };
        if subnet.mask(base) != base {
            return Err(format!(
                "{text} has bits set below its prefix; write {}/{prefix}",
                subnet.mask(base)
            ));
        }
        Ok(subnet)
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits =
                    u32::from(v4) & u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                IpAddr::V4(bits.into())
            }
            IpAddr::V6(v6) => {
                let bits =
                    u128::from(v6) & u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                IpAddr::V6(bits.into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.base.is_ipv4() && self.mask(ip) == self.base
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The range one operator typically holds, for caps on half-open inbound connections: an IPv4
/// /16 or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrefixGroup(pub [u8; 9]);

pub fn prefix_group(ip: IpAddr) -> PrefixGroup {
    let mut g = [0u8; 9];
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            g[0] = 4;
            g[1..3].copy_from_slice(&v4.octets()[..2]);
        }
        IpAddr::V6(v6) => {
            g[0] = 6;
            g[1..9].copy_from_slice(&v6.octets()[..8]);
        }
    }
    PrefixGroup(g)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetGroup(pub [u8; 8]);

/// The group of `addr`. All loopback is one group, except with `local_distinct` (a local test
/// network, where nodes differ only by loopback address and port): then each loopback address
/// and port is its own group.
pub fn netgroup(addr: &SocketAddr, local_distinct: bool) -> NetGroup {
    let ip = canonical_ip(addr.ip());
    let [port_hi, port_lo] = addr.port().to_be_bytes();
    let mut g = [0u8; 8];
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() && !local_distinct => g[0] = 0x7f,
        IpAddr::V6(v6) if v6.is_loopback() && !local_distinct => g[0] = 0x7f,
        IpAddr::V4(v4) if v4.is_loopback() => {
            let o = v4.octets();
            g = [0x7f, o[1], o[2], o[3], port_hi, port_lo, 0, 0];
        }
        IpAddr::V4(v4) => {
            let o = v4.octets();
            g[0] = 4;
            g[1] = o[0];
            g[2] = o[1];
        }
        IpAddr::V6(v6) if v6.is_loopback() => {
            g = [0x7f, 0, 0, 1, port_hi, port_lo, 6, 0];
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            g[0] = 6;
            g[1..5].copy_from_slice(&o[..4]);
        }
    }
    NetGroup(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> NetGroup {
        netgroup(&s.parse().unwrap(), false)
    }

    #[test]
    fn ipv4_groups_by_slash_16() {
        assert_eq!(g("1.2.3.4:1"), g("1.2.200.9:2"));
        assert_ne!(g("1.2.3.4:1"), g("1.3.3.4:1"));
        assert_eq!(
            g("[::ffff:1.2.3.4]:1"),
            g("1.2.9.9:1"),
            "mapped IPv4 is IPv4"
        );
    }

    #[test]
    fn ipv6_groups_by_slash_32() {
        assert_eq!(g("[2001:db8:1::1]:1"), g("[2001:db8:ffff::2]:1"));
        assert_ne!(g("[2001:db8::1]:1"), g("[2001:db9::1]:1"));
    }

    #[test]
    fn loopback_addresses_are_their_own_groups_only_on_local_networks() {
        let local = |s: &str| netgroup(&s.parse().unwrap(), true);
        assert_ne!(local("127.0.0.1:1000"), local("127.0.0.1:1001"));
        assert_eq!(local("127.0.0.1:1000"), local("127.0.0.1:1000"));
        assert_eq!(g("127.0.0.1:1000"), g("127.0.0.1:1001"));
        assert_eq!(g("127.0.0.1:1000"), g("127.9.9.9:5"));
        assert_eq!(g("[::1]:1000"), g("127.0.0.1:1"));
    }

    #[test]
    fn only_global_addresses_are_routable() {
        let r = |s: &str| is_routable(s.parse().unwrap());
        for yes in ["1.2.3.4", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.4.4"] {
            assert!(r(yes), "{yes}");
        }
        for no in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(!r(no), "{no}");
        }
    }

    #[test]
    fn subnets_parse_and_match() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let one = Subnet::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && one.contains(ip("::ffff:127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let net = Subnet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")) && !net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        let v6 = Subnet::parse("2001:db8:1::/48").unwrap();
        assert!(v6.contains(ip("2001:db8:1:ffff::1")) && !v6.contains(ip("2001:db8:2::1")));
        assert!(Subnet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(
            Subnet::parse("::ffff:10.0.0.0/104").unwrap(),
            Subnet::parse("10.0.0.0/8").unwrap()
        );
        for bad in [
            "10.1.2.3/16",
            "10.0.0.0/33",
            "nohost",
            "10.0.0.0/x",
            "::/129",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_addresses_are_canonicalised() {
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:8333".parse().unwrap();
        assert_eq!(canonical_addr(mapped), "1.2.3.4:8333".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(canonical_addr(v6), v6);
    }

    #[test]
    fn hosts_are_ipv4_addresses_or_ipv6_slash_64s() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            host_key(ip("2001:db8:1:2::1")),
            host_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            host_key(ip("2001:db8:1:2::1")),
            host_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(host_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_ne!(host_key(ip("1.2.3.4")), host_key(ip("1.2.3.5")));
        assert_eq!(prefix_group(ip("1.2.3.4")), prefix_group(ip("1.2.200.5")));
        assert_ne!(prefix_group(ip("1.2.3.4")), prefix_group(ip("1.3.3.4")));
        assert_eq!(
            prefix_group(ip("::ffff:127.1.0.1")),
            prefix_group(ip("127.1.9.9"))
        );
        assert_eq!(
            prefix_group(ip("2001:db8:1:2::1")),
            prefix_group(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            prefix_group(ip("2001:db8:1:2::1")),
            prefix_group(ip("2001:db8:1:3::1"))
        );
    }
}
