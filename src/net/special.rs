//! Special-purpose addresses: which IP addresses an outbound request must not reach.
//!
//! The tables follow the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890
//! and its updates): everything that is not a globally reachable unicast address is refused.
//! IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, the NAT64 well-known
//! prefix `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address inside, so
//! `::ffff:127.0.0.1` is loopback like `127.0.0.1`. Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is special; [`AddressClass::code`] is the stable code in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0`, `::`, and `0.0.0.0/8` ("this network").
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 `10/8`, `172.16/12`, `192.168/16`; IPv6 unique local `fc00::/7` and the
    /// deprecated site-local `fec0::/10`.
    Private,
    /// Shared address space for carrier-grade NAT, `100.64.0.0/10`.
    Shared,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation and benchmarking ranges: TEST-NETs, `198.18/15`, `2001:db8::/32`,
    /// `2001:2::/48`, `3fff::/20`.
    Documentation,
    /// Reserved or protocol-internal ranges: `192.0.0.0/24`, `192.88.99.0/24`, `240/4`,
    /// IPv4-compatible IPv6, discard-only `100::/64`, ORCHID, Teredo, the local-use NAT64
    /// prefix, and other IETF protocol assignments.
    Reserved,
}

impl AddressClass {
    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::Shared => "shared",
            Self::LinkLocal => "link_local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
        }
    }
}

/// The class of a special-purpose address; `None` for a globally reachable unicast one.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// IPv4 ranges, most specific first where they overlap.
const V4: &[([u8; 4], u32, AddressClass)] = &[
    ([255, 255, 255, 255], 32, AddressClass::Broadcast),
    ([0, 0, 0, 0], 8, AddressClass::Unspecified),
    ([10, 0, 0, 0], 8, AddressClass::Private),
    ([100, 64, 0, 0], 10, AddressClass::Shared),
    ([127, 0, 0, 0], 8, AddressClass::Loopback),
    ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
    ([172, 16, 0, 0], 12, AddressClass::Private),
    ([192, 0, 0, 0], 24, AddressClass::Reserved),
    ([192, 0, 2, 0], 24, AddressClass::Documentation),
    ([192, 88, 99, 0], 24, AddressClass::Reserved),
    ([192, 168, 0, 0], 16, AddressClass::Private),
    ([198, 18, 0, 0], 15, AddressClass::Documentation),
    ([198, 51, 100, 0], 24, AddressClass::Documentation),
    ([203, 0, 113, 0], 24, AddressClass::Documentation),
    ([224, 0, 0, 0], 4, AddressClass::Multicast),
    ([240, 0, 0, 0], 4, AddressClass::Reserved),
];

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    V4.iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

/// IPv6 ranges without an embedded IPv4 address.
const V6: &[([u16; 8], u32, AddressClass)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, AddressClass::Unspecified),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, AddressClass::Loopback),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, AddressClass::Reserved),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, AddressClass::Reserved),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, AddressClass::Reserved),
    (
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        AddressClass::Documentation,
    ),
    ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, AddressClass::Reserved),
    ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, AddressClass::Reserved),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        AddressClass::Documentation,
    ),
    (
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        AddressClass::Documentation,
    ),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, AddressClass::Reserved),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, AddressClass::Private),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, AddressClass::LinkLocal),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, AddressClass::Private),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, AddressClass::Multicast),
];

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(inner) = embedded_v4(ip) {
        // An embedded public address is as reachable as the address itself; an embedded
        // special one must not become a way around the IPv4 table.
        return classify_v4(inner);
    }
    V6.iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
        // IPv4-compatible (deprecated, RFC 4291): never a legitimate destination.
        .or_else(|| in_v6(ip, [0; 8], 96).then_some(AddressClass::Reserved))
}

/// The IPv4 address inside an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return Some(Ipv4Addr::from((bits & 0xffff_ffff) as u32));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<&'static str> {
        classify(text.parse().unwrap()).map(AddressClass::code)
    }

    #[test]
    fn every_class_in_both_families() {
        let cases: &[(&str, Option<&str>)] = &[
            // Unspecified.
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("::", Some("unspecified")),
            // Loopback.
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("::1", Some("loopback")),
            // Private.
            ("10.0.0.1", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("fc00::1", Some("private")),
            ("fd12:3456::1", Some("private")),
            ("fec0::1", Some("private")),
            // Shared (CGNAT).
            ("100.64.0.1", Some("shared")),
            ("100.127.255.255", Some("shared")),
            // Link-local, cloud metadata included.
            ("169.254.169.254", Some("link_local")),
            ("fe80::1", Some("link_local")),
            ("febf::1", Some("link_local")),
            // Multicast and broadcast.
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            // Documentation and benchmarking.
            ("192.0.2.1", Some("documentation")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("198.18.0.1", Some("documentation")),
            ("2001:db8::1", Some("documentation")),
            // Reserved.
            ("240.0.0.1", Some("reserved")),
            ("192.0.0.8", Some("reserved")),
            ("100::1", Some("reserved")),
            ("2001::1", Some("reserved")),
            ("64:ff9b:1::1", Some("reserved")),
            ("::7f00:1", Some("reserved")),
            // IPv4 inside IPv6: judged by the IPv4 address.
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("link_local")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::a00:1", Some("private")),
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:c0a8:101::1", Some("private")),
            // Globally reachable.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("169.253.255.255", None),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
        ];
        for (text, want) in cases {
            assert_eq!(class(text), *want, "{text}");
        }
    }

    #[test]
    fn range_edges() {
        assert_eq!(class("9.255.255.255"), None);
        assert_eq!(class("11.0.0.0"), None);
        assert_eq!(class("172.15.255.255"), None);
        assert_eq!(class("192.167.255.255"), None);
        assert_eq!(class("192.169.0.0"), None);
        assert_eq!(class("223.255.255.255"), None);
        assert_eq!(class("fbff:ffff::1"), None);
        assert_eq!(class("fe00::1"), None);
    }
}
