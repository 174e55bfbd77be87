//! One connection's messages, read and answered in turn: pgwire's own loop
//! ([`pgwire::tokio::process_socket`]) with a write buffer sized for result
//! sets.
//!
//! pgwire flushes a connection's socket whenever 8 KiB of messages wait: one
//! system call per 8 KiB of rows, 1,200 for 100,000 rows of the walkthrough's
//! data. Here rows go out in pieces of [`WRITE_BUFFER`]; every response still
//! ends with a flush (pgwire flushes at `ReadyForQuery`, `Sync` and `Flush`),
//! so nothing waits in the buffer for the next message.

use std::io;

use futures::StreamExt;
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;

/// How many bytes of messages wait before they are written to the socket.
const WRITE_BUFFER: usize = 256 * 1024;

/// Serves `socket` (TLS first, if the client asks and `tls` is set) with
/// `handlers` until the client ends the connection or it breaks. How long a
/// client may take to log in is the caller's to bound.
pub async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
) -> io::Result<()> {
    let Some(mut socket) = negotiate_tls(socket, tls).await? else {
        return Ok(());
    };
    socket.set_backpressure_boundary(WRITE_BUFFER);
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    // A message that does not decode ends the connection, as in pgwire.
    while let Some(Ok(message)) = socket.next().await {
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let answered = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(e) = answered {
            process_error(&mut socket, e, in_extended_query).await?;
        }
    }
    Ok(())
}
