//! Network groups: which addresses are "the same network" for diversity and bucketing.
//!
//! IPv4 addresses group by /16 and IPv6 by /32, as in Bitcoin Core, so one operator with many
//! addresses in one range cannot fill all of a node's slots. Loopback addresses are each their
//! own group (address and port), so a test network of many nodes on one host still gets
//! diverse outbound connections.

use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetGroup(pub [u8; 8]);

pub fn netgroup(addr: &SocketAddr) -> NetGroup {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let [port_hi, port_lo] = addr.port().to_be_bytes();
    let mut g = [0u8; 8];
    match ip {
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
        netgroup(&s.parse().unwrap())
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
    fn loopback_addresses_are_their_own_groups() {
        assert_ne!(g("127.0.0.1:1000"), g("127.0.0.1:1001"));
        assert_eq!(g("127.0.0.1:1000"), g("127.0.0.1:1000"));
    }
}
