//! The ports a process listens on: who may come in, how many at once, and for
//! how long a silent one stays.
//!
//! Every port of a rask process (Flight on schedulers and workers, the
//! dashboard, PostgreSQL) accepts through a [`Port`]:
//!
//! - it refuses to listen beyond loopback when nothing checks who connects
//!   ([`Security::may_expose`]), unless the operator said `--insecure`;
//! - it holds at most [`Limits::connections`] connections at once; past that
//!   a new one is closed at once (or told so, by the PostgreSQL server);
//! - it waits, with backoff, rather than spin when the process runs out of
//!   file descriptors (`EMFILE`);
//! - a connection that sends and receives nothing for [`Limits::idle`] is
//!   closed: a peer that vanished (half-open) or that never speaks.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::Security;
use crate::{Error, Result};

/// How much a port takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// A connection silent both ways this long is closed; `None` for never.
    pub idle: Option<Duration>,
}

impl Limits {
    /// Flight, between the processes of a cluster and its clients: peers
    /// ping every few seconds, so a minute of silence means a dead peer.
    pub const FLIGHT: Limits = Limits {
        connections: 1024,
        idle: Some(Duration::from_secs(60)),
    };

    /// The dashboard: browsers, probes and Prometheus.
    pub const DASHBOARD: Limits = Limits {
        connections: 256,
        idle: Some(Duration::from_secs(60)),
    };
}

/// A listening socket with its limits.
pub struct Port {
    listener: TcpListener,
    name: &'static str,
    limits: Limits,
    permits: Arc<Semaphore>,
    turned_away: AtomicU64,
}

/// A connection as [`Port::accept`] hands it over.
pub enum Arrival {
    /// Within the limits.
    Admitted(Connection, SocketAddr),
    /// Past [`Limits::connections`]: close it (after saying why, if the
    /// protocol has a way).
    Full(TcpStream, SocketAddr),
}

impl Port {
    /// `listener`, serving `name` (for messages: "the dashboard") within `limits`.
    pub fn new(listener: TcpListener, name: &'static str, limits: Limits) -> Self {
        Self {
            listener,
            name,
            permits: Arc::new(Semaphore::new(limits.connections)),
            limits,
            turned_away: AtomicU64::new(0),
        }
    }

    /// Listens on `host:port` (0 for any free port).
    pub async fn bind(host: &str, port: u16, name: &'static str, limits: Limits) -> Result<Self> {
        let listener = TcpListener::bind((host, port))
            .await
            .map_err(|e| Error::Config(format!("cannot serve {name} on {host}:{port}: {e}")))?;
        Ok(Self::new(listener, name, limits))
    }

    /// From a standard listener (made non-blocking here).
    pub fn from_std(
        listener: std::net::TcpListener,
        name: &'static str,
        limits: Limits,
    ) -> Result<Self> {
        let fail = |e: io::Error| Error::Comm(format!("cannot serve {name}: {e}"));
        listener.set_nonblocking(true).map_err(fail)?;
        Ok(Self::new(
            TcpListener::from_std(listener).map_err(fail)?,
            name,
            limits,
        ))
    }

    /// Where it listens.
    pub fn address(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Comm(format!("the address of {}: {e}", self.name)))
    }

    /// This port, if `security` lets it listen where it does; `checks_callers`
    /// says whether the port itself checks who connects (a token, client
    /// certificates, passwords).
    pub fn expose(self, security: &Security, checks_callers: bool) -> Result<Self> {
        security.may_expose(self.name, self.address()?, checks_callers)?;
        Ok(self)
    }

    /// The next connection. Errors of the listener are logged and waited out:
    /// an aborted handshake is skipped, running out of file descriptors or
    /// memory waits, 10 ms at first and up to a second.
    pub async fn accept(&self) -> Arrival {
        let mut pause = Duration::from_millis(10);
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!("{}: cannot accept a connection: {e}", self.name);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("cannot turn Nagle's algorithm off: {e}");
            }
            return match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => Arrival::Admitted(
                    Connection::new(stream, Some(permit), self.limits.idle),
                    peer,
                ),
                Err(_) => {
                    // Logged once in a thousand: a flood must not flood the log.
                    let n = self.turned_away.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(1000) {
                        tracing::warn!(
                            %peer,
                            "{}: {} connections are open, the most it takes; closing new ones ({} so far)",
                            self.name,
                            self.limits.connections,
                            n + 1
                        );
                    }
                    Arrival::Full(stream, peer)
                }
            };
        }
    }

    /// The admitted connections, one after another (those past the limit
    /// are closed): for servers that take a stream of connections.
    pub fn incoming(self) -> impl Stream<Item = io::Result<Connection>> + Send + 'static {
        futures::stream::unfold(self, |port| async move {
            loop {
                match port.accept().await {
                    Arrival::Admitted(connection, _) => return Some((Ok(connection), port)),
                    Arrival::Full(..) => continue,
                }
            }
        })
    }
}

/// Errors of one connection, not of the listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// An accepted connection: holds its place in the port's limit until dropped,
/// and fails (`TimedOut`) once silent both ways for the port's idle time.
pub struct Connection {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl Connection {
    fn new(
        stream: TcpStream,
        permit: Option<OwnedSemaphorePermit>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            stream,
            _permit: permit,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        }
    }

    /// The socket, for a server that takes one (its limit still held by `self`).
    pub fn into_parts(self) -> (TcpStream, Option<OwnedSemaphorePermit>) {
        (self.stream, self._permit)
    }

    /// Bytes moved: the idle clock starts again.
    fn active(&mut self) {
        if let Some((idle, sleep)) = &mut self.idle {
            sleep.as_mut().reset(Instant::now() + *idle);
        }
    }

    /// `Pending` from the socket: an error if the idle time ran out meanwhile.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some((idle, sleep)) = &mut self.idle else {
            return Ok(());
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("silent for {} s", idle.as_secs()),
            )),
            Poll::Pending => Ok(()),
        }
    }

    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.active();
                Poll::Ready(result)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.track(cx, polled)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.track(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn port(limits: Limits) -> (Port, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        (Port::new(listener, "a test port", limits), address)
    }

    #[tokio::test]
    async fn past_the_limit_connections_are_turned_away_until_one_closes() {
        let limits = Limits {
            connections: 1,
            idle: None,
        };
        let (port, address) = port(limits).await;
        let _first = TcpStream::connect(address).await.unwrap();
        let Arrival::Admitted(first, _) = port.accept().await else {
            panic!("the first is admitted")
        };
        let _second = TcpStream::connect(address).await.unwrap();
        assert!(matches!(port.accept().await, Arrival::Full(..)));
        drop(first);
        let _third = TcpStream::connect(address).await.unwrap();
        assert!(matches!(port.accept().await, Arrival::Admitted(..)));
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        let limits = Limits {
            connections: 8,
            idle: Some(Duration::from_secs(1)),
        };
        let (port, address) = port(limits).await;
        let mut peer = TcpStream::connect(address).await.unwrap();
        let Arrival::Admitted(mut connection, _) = port.accept().await else {
            panic!("admitted")
        };
        // Talking for longer than the idle time keeps it open.
        let mut byte = [0u8; 1];
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            peer.write_all(b"x").await.unwrap();
            connection.read_exact(&mut byte).await.unwrap();
        }
        let silent = connection.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(silent.kind(), io::ErrorKind::TimedOut, "{silent}");
    }
}
