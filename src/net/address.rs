//! Addresses: where a process listens, and the address it gives others.
//!
//! As with Dask, `--host` says where a process listens and the address it
//! advertises is one its peers can reach: `--contact-address` when given; for
//! a process listening on every interface (`0.0.0.0`, `::`), the address of the
//! interface that routes to the scheduler (a worker) or of the first interface
//! that is not loopback (the scheduler); else the host it listens on. Never
//! `0.0.0.0`.
//!
//! Addresses are written `host:port`, `tcp://host:port`, `[::1]:port` or with
//! a name (`localhost:8786`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use crate::{Error, Result};

/// The scheme users may write before an address, as Dask's addresses have it.
const SCHEME: &str = "tcp://";

/// `address` as `host:port`, with a `tcp://` prefix and a trailing `/`
/// dropped; an error naming it when it has no port.
///
/// ```
/// use rask::internals::net::address::normalize;
/// assert_eq!(normalize("tcp://10.0.0.1:8786/").unwrap(), "10.0.0.1:8786");
/// assert_eq!(normalize("localhost:8786").unwrap(), "localhost:8786");
/// assert!(normalize("10.0.0.1").is_err());
/// ```
pub fn normalize(address: &str) -> Result<String> {
    let trimmed = address.trim();
    let bare = trimmed.strip_prefix(SCHEME).unwrap_or(trimmed);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let invalid = |why: &str| {
        Error::Config(format!(
            "'{address}' is not an address: {why} (write HOST:PORT, e.g. 10.0.0.5:8786)"
        ))
    };
    if bare.contains("://") {
        return Err(invalid("only tcp:// is understood"));
    }
    let (host, port) = bare.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    port.parse::<u16>()
        .map_err(|_| invalid("the port is not a number"))?;
    Ok(bare.to_string())
}

/// The socket address `address` names (the first its host resolves to).
pub fn resolve(address: &str) -> Result<SocketAddr> {
    let normalized = normalize(address)?;
    normalized
        .to_socket_addrs()
        .map_err(|e| Error::Connect {
            address: normalized.clone(),
            message: format!("cannot resolve it: {e}"),
        })?
        .next()
        .ok_or_else(|| Error::Connect {
            address: normalized.clone(),
            message: "its name resolves to no address".into(),
        })
}

/// Whether `address` names this machine through loopback (`127.0.0.1`,
/// `localhost`, `::1`); names that cannot be resolved count as not loopback.
pub fn is_loopback(address: &str) -> bool {
    resolve(address).is_ok_and(|a| a.ip().is_loopback())
}

/// The interface a worker listens on when `--host` is not given, as
/// `dask-worker` chooses it: loopback when its scheduler is on loopback, every
/// interface otherwise.
pub fn default_worker_host(scheduler: &str) -> &'static str {
    if is_loopback(scheduler) {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    }
}

/// The address a process listening on `listening` gives others.
///
/// - `contact`: `--contact-address`, `HOST:PORT` or a host alone (then the
///   listening port is added);
/// - `toward`: the address of the process peers reach it from (a worker's
///   scheduler), whose route picks the interface when `listening` is on every
///   interface.
pub fn advertised(
    listening: SocketAddr,
    contact: Option<&str>,
    toward: Option<SocketAddr>,
) -> Result<String> {
    if let Some(contact) = contact.map(str::trim).filter(|c| !c.is_empty()) {
        let contact = contact.strip_prefix(SCHEME).unwrap_or(contact);
        // A host alone (a name, an IPv4 or a bare IPv6 address): the port is
        // the one we listen on.
        if contact.parse::<IpAddr>().is_ok() || !contact.contains(':') {
            return Ok(with_port(contact, listening.port()));
        }
        return normalize(contact);
    }
    if !listening.ip().is_unspecified() {
        return Ok(listening.to_string());
    }
    let ip = toward
        .and_then(|peer| route_to(peer, listening.ip()))
        .or_else(|| first_interface(listening.ip()))
        .ok_or_else(|| {
            Error::Config(format!(
                "listening on {listening}, but no interface address was found to give \
                 other processes: pass --contact-address HOST"
            ))
        })?;
    Ok(SocketAddr::new(ip, listening.port()).to_string())
}

/// `host` with `port`, bracketing a bare IPv6 address.
fn with_port(host: &str, port: u16) -> String {
    match host.parse::<Ipv6Addr>() {
        Ok(v6) => SocketAddr::new(IpAddr::V6(v6), port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

/// The local address of the interface the kernel routes `peer` through.
/// A UDP socket's `connect` only picks the route: nothing is sent.
fn route_to(peer: SocketAddr, family: IpAddr) -> Option<IpAddr> {
    let any = match (peer, family) {
        (SocketAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (SocketAddr::V6(_), _) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    socket.connect(peer).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The first address of an interface that is up and not loopback, of the
/// family of `family`; loopback when there is no other.
fn first_interface(family: IpAddr) -> Option<IpAddr> {
    let addresses = interface_addresses();
    let same_family = |ip: &IpAddr| ip.is_ipv4() == family.is_ipv4();
    addresses
        .iter()
        .copied()
        .find(|ip| same_family(ip) && !ip.is_loopback())
        .or_else(|| addresses.into_iter().find(same_family))
}

/// The addresses of the interfaces that are up, in the order the system lists them.
fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates, which
    // we only read, and free once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while let Some(interface) = entry.as_ref() {
            entry = interface.ifa_next;
            let up = interface.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
            let Some(address) = interface.ifa_addr.as_ref() else {
                continue;
            };
            if !up {
                continue;
            }
            match address.sa_family as libc::c_int {
                libc::AF_INET => {
                    let v4 = &*(interface.ifa_addr as *const libc::sockaddr_in);
                    found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let v6 = &*(interface.ifa_addr as *const libc::sockaddr_in6);
                    found.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(list);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_in_every_form_users_write_them() {
        assert_eq!(
            normalize(" tcp://127.0.0.1:8786 ").unwrap(),
            "127.0.0.1:8786"
        );
        assert_eq!(normalize("[::1]:8786").unwrap(), "[::1]:8786");
        for bad in ["", "127.0.0.1", ":8786", "host:port", "http://h:1"] {
            let e = normalize(bad).unwrap_err().to_string();
            assert!(e.contains("is not an address"), "{bad}: {e}");
        }
        assert!(is_loopback("localhost:8786"));
        assert!(is_loopback("tcp://127.0.0.1:1"));
        assert!(!is_loopback("192.0.2.1:8786"));
        assert_eq!(default_worker_host("localhost:8786"), "127.0.0.1");
        assert_eq!(default_worker_host("192.0.2.1:8786"), "0.0.0.0");
    }

    #[test]
    fn never_advertises_every_interface() {
        let any = at("0.0.0.0:4000");
        // Toward a loopback scheduler, the loopback interface answers.
        let toward = advertised(any, None, Some(at("127.0.0.1:8786"))).unwrap();
        assert_eq!(toward, "127.0.0.1:4000");
        // No peer: some interface's address, never 0.0.0.0.
        let alone = advertised(any, None, None).unwrap();
        assert!(!alone.starts_with("0.0.0.0"), "{alone}");
        assert!(alone.ends_with(":4000"), "{alone}");
        // A contact address wins; a host alone gets the listening port.
        assert_eq!(
            advertised(any, Some("10.1.2.3:9000"), None).unwrap(),
            "10.1.2.3:9000"
        );
        assert_eq!(
            advertised(any, Some("10.1.2.3"), None).unwrap(),
            "10.1.2.3:4000"
        );
        assert_eq!(
            advertised(any, Some("tcp://node-7"), None).unwrap(),
            "node-7:4000"
        );
        assert_eq!(
            advertised(at("[::]:4000"), Some("::1"), None).unwrap(),
            "[::1]:4000"
        );
        // A specific interface is what it is.
        assert_eq!(
            advertised(at("127.0.0.1:4000"), None, None).unwrap(),
            "127.0.0.1:4000"
        );
    }
}
