//! The dashboard's connections: admitted by a [`Port`] (its limits), then
//! TLS when the cluster has it, each handshake in a task of its own (and
//! bounded in time) so that a slow client holds up nobody else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use crate::net::{Arrival, Connection, Port};

/// The longest a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A plain or TLS connection to the dashboard.
pub type Io = Either<Connection, TlsStream<Connection>>;

/// The connections of the dashboard's port, ready for HTTP.
pub struct HttpPort {
    ready: mpsc::Receiver<(Io, SocketAddr)>,
    address: SocketAddr,
}

impl HttpPort {
    /// Accepts on `port` from a task of its own until dropped.
    pub fn new(port: Port, tls: Option<TlsAcceptor>) -> crate::Result<Self> {
        let address = port.address()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let arrival = tokio::select! {
                    arrival = port.accept() => arrival,
                    () = tx.closed() => return,
                };
                let Arrival::Admitted(connection, peer) = arrival else {
                    continue;
                };
                let tx = tx.clone();
                match &tls {
                    None => {
                        if tx.send((Either::Left(connection), peer)).await.is_err() {
                            return;
                        }
                    }
                    Some(tls) => {
                        let handshake = tls.accept(connection);
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE, handshake).await {
                                Ok(Ok(stream)) => {
                                    let _ = tx.send((Either::Right(stream), peer)).await;
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, "dashboard: TLS: {e}"),
                                Err(_) => {
                                    tracing::debug!(%peer, "dashboard: TLS handshake timed out")
                                }
                            }
                        });
                    }
                }
            }
        });
        Ok(Self { ready, address })
    }
}

impl axum::serve::Listener for HttpPort {
    type Io = Io;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task ended with the runtime: nothing comes any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
