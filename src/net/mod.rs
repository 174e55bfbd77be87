//! Sockets and who may use them: the ports every rask process listens on
//! ([`Port`]: connection caps, idle timeouts, `EMFILE` backoff, the refusal to
//! listen beyond loopback unchecked), the token and TLS settings they check
//! callers with ([`Security`]), and the addresses processes listen on and
//! advertise ([`address`]). The Flight services, the dashboard and the
//! PostgreSQL server all stand on it.

pub mod address;
mod port;
mod security;

pub use port::{Arrival, Connection, Limits, Port};
pub(crate) use security::constant_time_eq;
pub use security::{Security, TOKEN_VARIABLE, TlsFiles};
