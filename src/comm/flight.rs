//! The Arrow Flight service every rask process serves, and the client side of it.
//!
//! One service, two roles: a worker answers `do_get` with the results it holds
//! (a [`FetchTicket`] names the key and bucket); the scheduler answers
//! `do_exchange` with a control stream ([`ControlPlane`]) for each worker and
//! client. Every call's token is checked against the cluster's [`Security`]
//! before its body is read; hyper closes a connection that sends garbage, and
//! the process carries on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use super::wire::{self, FetchTicket, Hello, WORKER_DIED, WorkerDeath};
use crate::exec::TaskData;
use crate::net::{Port, Security};
use crate::worker::Peers;
use crate::{Error, Result};

/// The largest message a process accepts; a bigger one closes that call.
/// Data travels in messages of about 2 MiB (arrow-flight splits batches),
/// control frames stay under `FRAME_BYTES` plus one message, and a task's
/// literal arguments under [`MAX_ARGUMENT`].
pub const MAX_MESSAGE: usize = 64 << 20;

/// The largest literal argument a task carries with it; a bigger value is
/// scattered first (`Client::scatter`), as in Dask.
pub const MAX_ARGUMENT: usize = 16 << 20;

/// The largest ticket (the keys of one fetch) a worker reads.
pub const MAX_TICKET: usize = 1 << 20;

/// Messages a sender batches into one frame at most.
const BATCH: usize = 4096;

/// Bytes of messages past which a sender starts a new frame.
const FRAME_BYTES: usize = 4 << 20;

/// A stream of frames, as a Flight call returns them.
pub(crate) type Frames = BoxStream<'static, Result<FlightData, Status>>;

/// The scheduler's side of control streams.
pub(crate) trait ControlPlane: Send + Sync + 'static {
    /// A peer opened a control stream with `hello`; `incoming` is the rest of
    /// what it sends. Returns what to send it.
    fn exchange(
        &self,
        hello: Hello,
        incoming: Streaming<FlightData>,
        peer: Option<SocketAddr>,
    ) -> Result<Frames, Status>;

    /// A nanny reports that its worker died.
    fn worker_died(&self, death: WorkerDeath);
}

/// The Flight service of one process.
pub(crate) struct FlightNode {
    pub security: Security,
    /// The results this process serves (a worker's).
    pub results: Option<Arc<Peers>>,
    /// Where values put to this process go (a worker's own store).
    pub store: Option<Arc<crate::worker::DataStore>>,
    /// The control streams this process answers (the scheduler's).
    pub control: Option<Arc<dyn ControlPlane>>,
}

/// HTTP/2 flow-control windows: bytes a peer may send before it waits for
/// the receiver's go-ahead. The protocol's default (64 KiB) makes a large
/// result or scatter wait on a round trip every 64 KiB.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// The largest HTTP/2 frame the server accepts (the default is 16 KiB).
const MAX_FRAME: u32 = 1 << 20;

/// Serves `node` on `port` until `shutdown` resolves.
pub(crate) async fn serve(
    port: Port,
    node: FlightNode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tls = node.security.server_tls()?;
    let security = node.security.clone();
    let service = FlightServiceServer::new(node)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    // The token is checked on every call, before its body is read: a caller
    // without it costs no more than its headers.
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        move |request: Request<()>| {
            security.check(&request)?;
            Ok(request)
        },
    );
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_frame_size(Some(MAX_FRAME))
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    }
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(port.incoming(), shutdown)
        .await
        .map_err(|e| Error::Comm(format!("the Flight server stopped: {e}")))
}

/// A connection to the process at `address` (`HOST:PORT`).
pub(crate) async fn connect(
    address: &str,
    security: &Security,
) -> Result<FlightServiceClient<Channel>> {
    let address = &crate::net::address::normalize(address)?;
    let unreachable = |message: String| Error::Connect {
        address: address.to_string(),
        message,
    };
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(h, _)| h);
    let mut endpoint = Endpoint::from_shared(format!("{}://{address}", security.scheme()))
        .map_err(|e| unreachable(e.to_string()))?
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(tls) = security.client_tls(host)? {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| unreachable(e.to_string()))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        unreachable(message)
    })?;
    Ok(FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// Frames of the messages sent into the returned channel, batched.
pub(crate) fn outgoing<T: Serialize + Send + 'static>() -> (
    mpsc::UnboundedSender<T>,
    impl Stream<Item = FlightData> + Send + 'static,
) {
    let (tx, rx) = mpsc::unbounded_channel::<T>();
    let frames = UnboundedReceiverStream::new(rx)
        .ready_chunks(BATCH)
        .flat_map(|messages| futures::stream::iter(wire::frames(&messages, FRAME_BYTES)));
    (tx, frames)
}

/// Opens a control stream to the scheduler behind `client`, introducing
/// ourselves with `hello`: a sender of our messages and the stream of its frames.
pub(crate) async fn open_control<T: Serialize + Send + 'static>(
    client: &mut FlightServiceClient<Channel>,
    security: &Security,
    hello: Hello,
) -> Result<(mpsc::UnboundedSender<T>, Streaming<FlightData>)> {
    let (tx, frames) = outgoing::<T>();
    let first = futures::stream::once(async move { wire::frame(&[hello]) });
    let request = security.authorize(first.chain(frames));
    let response = client.do_exchange(request).await.map_err(|status| {
        let message = refusal(&status);
        match status.code() {
            // Asking again will get the same answer.
            tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::FailedPrecondition => Error::Refused {
                address: "the scheduler".into(),
                message,
            },
            _ => Error::Comm(message),
        }
    })?;
    Ok((tx, response.into_inner()))
}

/// The messages of the next frame of `stream`; `None` when it ends.
pub(crate) async fn next_messages<T: DeserializeOwned>(
    stream: &mut Streaming<FlightData>,
    what: &'static str,
) -> Result<Option<Vec<T>>> {
    match stream.message().await {
        Ok(Some(frame)) => wire::unframe(&frame, what)
            .map(Some)
            .map_err(|e| Error::Comm(e.to_string())),
        Ok(None) => Ok(None),
        Err(status) => Err(Error::Comm(refusal(&status))),
    }
}

/// A status as a person reads it.
pub(crate) fn refusal(status: &Status) -> String {
    match status.code() {
        tonic::Code::Unavailable => format!("connection lost: {}", status.message()),
        _ => status.message().to_string(),
    }
}

/// Stores `batch` under `key` on the worker behind `client` (Flight `do_put`,
/// the key in the descriptor's command): how a client scatters a value.
pub(crate) async fn put(
    client: &mut FlightServiceClient<Channel>,
    security: &Security,
    key: &crate::key::Key,
    batches: Vec<datafusion::arrow::record_batch::RecordBatch>,
) -> Result<(), String> {
    let descriptor = FlightDescriptor::new_cmd(wire::encode(key));
    let frames = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .filter_map(|frame| async move {
            // Encoding batches we made cannot fail; a frame that did is dropped
            // and the worker refuses the incomplete value.
            frame.ok()
        });
    let response = client
        .do_put(security.authorize(frames))
        .await
        .map_err(|s| refusal(&s))?;
    let mut acks = response.into_inner();
    while acks.message().await.map_err(|s| refusal(&s))?.is_some() {}
    Ok(())
}

/// Tells the scheduler at `address` that a worker died (see [`WorkerDeath`]).
pub async fn report_death(address: &str, security: &Security, death: &WorkerDeath) -> Result<()> {
    let mut client = connect(address, security).await?;
    let action = Action {
        r#type: WORKER_DIED.into(),
        body: wire::encode(death).into(),
    };
    client
        .do_action(security.authorize(action))
        .await
        .map_err(|status| Error::Comm(refusal(&status)))?;
    Ok(())
}

/// Fetches `ticket` from `client`: the batches of each result it names.
pub(crate) async fn fetch(
    client: &mut FlightServiceClient<Channel>,
    security: &Security,
    ticket: &FetchTicket,
) -> Result<Vec<Vec<RecordBatch>>, String> {
    let keys = fetch_sections(client, security, ticket).await?;
    if keys.len() != ticket.keys.len() {
        return Err(format!(
            "asked for {} results, received {}",
            ticket.keys.len(),
            keys.len()
        ));
    }
    Ok(keys)
}

/// The batches of bucket `bucket` (or all) of `key` from `client`, as they arrive.
pub(crate) async fn fetch_stream(
    client: &mut FlightServiceClient<Channel>,
    security: &Security,
    key: &crate::key::Key,
    bucket: Option<usize>,
) -> Result<impl Stream<Item = Result<RecordBatch, String>> + Send + 'static, String> {
    let ticket = FetchTicket {
        keys: vec![key.clone()],
        bucket: bucket.map(|b| b as u32),
        by_bucket: false,
    };
    let request = security.authorize(Ticket {
        ticket: wire::encode(&ticket).into(),
    });
    let response = client.do_get(request).await.map_err(|s| refusal(&s))?;
    let frames = response.into_inner().map_err(FlightError::from);
    Ok(
        FlightDataDecoder::new(frames).filter_map(|message| async move {
            match message {
                Ok(message) => match message.payload {
                    DecodedPayload::RecordBatch(batch) => Some(Ok(batch)),
                    DecodedPayload::Schema(_) | DecodedPayload::None => None,
                },
                Err(e) => Some(Err(e.to_string())),
            }
        }),
    )
}

/// A copy of the whole result `key` from `client`, its buckets kept.
pub(crate) async fn fetch_whole(
    client: &mut FlightServiceClient<Channel>,
    security: &Security,
    key: &crate::key::Key,
) -> Result<TaskData, String> {
    let ticket = FetchTicket {
        keys: vec![key.clone()],
        bucket: None,
        by_bucket: true,
    };
    let sections = fetch_sections(client, security, &ticket).await?;
    Ok(
        match crate::exec::Value::from_batches(sections.concat().as_slice()) {
            Some(value) if sections.len() == 1 => TaskData::Value(value),
            _ => TaskData::Batches(sections),
        },
    )
}

/// The sections of what `ticket` names: each begins at a schema message.
async fn fetch_sections(
    client: &mut FlightServiceClient<Channel>,
    security: &Security,
    ticket: &FetchTicket,
) -> Result<Vec<Vec<RecordBatch>>, String> {
    let request = security.authorize(Ticket {
        ticket: wire::encode(ticket).into(),
    });
    let response = client.do_get(request).await.map_err(|s| refusal(&s))?;
    let frames = response.into_inner().map_err(FlightError::from);
    let mut decoded = FlightDataDecoder::new(frames);
    let mut keys: Vec<Vec<RecordBatch>> = Vec::with_capacity(ticket.keys.len());
    while let Some(message) = decoded.next().await {
        match message.map_err(|e| e.to_string())?.payload {
            DecodedPayload::Schema(_) => keys.push(Vec::new()),
            DecodedPayload::RecordBatch(batch) => match keys.last_mut() {
                Some(batches) => batches.push(batch),
                None => return Err("a batch came before its schema".into()),
            },
            DecodedPayload::None => {}
        }
    }
    Ok(keys)
}

type Answer<T> = std::result::Result<Response<T>, Status>;

fn unsupported<T>(what: &str) -> Answer<T> {
    Err(Status::unimplemented(format!("rask does not serve {what}")))
}

#[async_trait::async_trait]
impl FlightService for FlightNode {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = Frames;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = Frames;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_get(&self, request: Request<Ticket>) -> Answer<Frames> {
        let Some(results) = &self.results else {
            return unsupported("results (this is not a worker)");
        };
        let bytes = &request.get_ref().ticket;
        if bytes.len() > MAX_TICKET {
            return Err(Status::invalid_argument(format!(
                "a ticket of {} bytes (at most {MAX_TICKET})",
                bytes.len()
            )));
        }
        let ticket: FetchTicket =
            wire::decode(bytes, "ticket").map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Each key's batches follow a schema message of their own, which marks
        // where the key starts (an empty schema for a key with no batches).
        let mut frames = Vec::with_capacity(ticket.keys.len());
        let served = self.store.as_ref().map(|s| Arc::clone(s.activity()));
        let section =
            |schema: SchemaRef,
             batches: Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>| {
                let served = served.clone();
                let batches = batches.map(move |batch| {
                    let batch = batch.map_err(FlightError::ProtocolError)?;
                    if let Some(activity) = &served {
                        activity.served(crate::exec::sliced_bytes(&batch));
                    }
                    Ok(batch)
                });
                FlightDataEncoderBuilder::new()
                    .with_schema(schema)
                    .with_dictionary_handling(DictionaryHandling::Resend)
                    .build(futures::stream::iter(batches))
            };
        let held = |batches: Vec<RecordBatch>| -> Box<dyn Iterator<Item = _> + Send> {
            Box::new(batches.into_iter().map(Ok))
        };
        for key in &ticket.keys {
            // A spilled result is read back from disk as it is sent.
            if !ticket.by_bucket
                && let Some(stored) = results.find_spilled(key)
            {
                let bucket = ticket.bucket.map(|b| b as usize);
                let (schema, batches) = stored
                    .batches(bucket)
                    .map_err(|e| Status::internal(format!("{key} cannot be read back: {e}")))?;
                frames.push(section(schema, batches));
                continue;
            }
            let data = results
                .find(key)
                .ok_or_else(|| Status::not_found(format!("{key} is not held here")))?;
            let sections = match (&*data, ticket.bucket) {
                (TaskData::Value(value), _) => vec![value.to_batches().map_err(|e| {
                    Status::failed_precondition(format!("{key} cannot be sent: {e}"))
                })?],
                (data, Some(bucket)) => vec![
                    data.bucket(bucket as usize)
                        .map(<[_]>::to_vec)
                        .unwrap_or_default(),
                ],
                (TaskData::Batches(buckets), None) if ticket.by_bucket => buckets.clone(),
                (data, None) => vec![data.batches().cloned().collect()],
            };
            for batches in sections {
                let schema = batches
                    .first()
                    .or_else(|| data.batches().next())
                    .map_or_else(|| Arc::new(Schema::empty()), |b| b.schema());
                frames.push(section(schema, held(batches)));
            }
        }
        let frames = futures::stream::iter(frames)
            .flatten()
            .map_err(Status::from);
        Ok(Response::new(frames.boxed()))
    }

    async fn do_exchange(&self, request: Request<Streaming<FlightData>>) -> Answer<Frames> {
        let Some(control) = &self.control else {
            return unsupported("control streams (this is not a scheduler)");
        };
        let peer = request.remote_addr();
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty control stream"))?;
        let hello = wire::unframe::<Hello>(&first, "hello")
            .map_err(|e| e.to_string())
            .and_then(|m| {
                m.into_iter()
                    .next()
                    .ok_or_else(|| "an empty frame".to_string())
            });
        let hello = match hello {
            Ok(hello) => hello,
            Err(why) => {
                let peer = peer.map_or_else(|| "unknown peer".into(), |p| p.to_string());
                tracing::warn!(%peer, "closing the connection: a malformed hello ({why})");
                return Err(Status::invalid_argument(
                    "a control stream must start with a hello",
                ));
            }
        };
        control.exchange(hello, incoming, peer).map(Response::new)
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Answer<Self::HandshakeStream> {
        unsupported("handshake")
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Answer<Self::ListFlightsStream> {
        unsupported("list_flights")
    }

    async fn get_flight_info(&self, _request: Request<FlightDescriptor>) -> Answer<FlightInfo> {
        unsupported("get_flight_info")
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Answer<PollInfo> {
        unsupported("poll_flight_info")
    }

    async fn get_schema(&self, _request: Request<FlightDescriptor>) -> Answer<SchemaResult> {
        unsupported("get_schema")
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Answer<Self::DoPutStream> {
        let Some(store) = &self.store else {
            return unsupported("do_put (this is not a worker)");
        };
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty put"))?;
        let key: crate::key::Key = first
            .flight_descriptor
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("a put names its key in its descriptor"))
            .and_then(|d| {
                wire::decode(&d.cmd, "put key").map_err(|e| Status::invalid_argument(e.to_string()))
            })?;
        let frames = futures::stream::once(async move { Ok(first) })
            .chain(incoming)
            .map_err(arrow_flight::error::FlightError::from);
        let batches: Vec<_> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(frames)
                .try_collect()
                .await
                .map_err(|e| Status::invalid_argument(format!("a put of {key}: {e}")))?;
        let value = crate::exec::Value::from_batches(&batches).ok_or_else(|| {
            Status::invalid_argument(format!("a put of {key} that is not one value"))
        })?;
        tracing::debug!(%key, nbytes = value.nbytes(), "value stored");
        store.insert(key, Arc::new(TaskData::Value(value)));
        Ok(Response::new(
            futures::stream::once(async { Ok(PutResult::default()) }).boxed(),
        ))
    }

    async fn do_action(&self, request: Request<Action>) -> Answer<Self::DoActionStream> {
        let (Some(control), WORKER_DIED) = (&self.control, request.get_ref().r#type.as_str())
        else {
            return unsupported(&format!("the action {:?}", request.get_ref().r#type));
        };
        let death: WorkerDeath = wire::decode(&request.get_ref().body, "worker death")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        control.worker_died(death);
        Ok(Response::new(futures::stream::empty().boxed()))
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Answer<Self::ListActionsStream> {
        unsupported("list_actions")
    }
}

/// Frames from a peer's stream as messages, ending at its end or first bad
/// frame (logged: the peer is then dropped, the process carries on).
pub(crate) fn messages<T: DeserializeOwned + Send + 'static>(
    incoming: Streaming<FlightData>,
    what: &'static str,
    peer: String,
) -> Pin<Box<dyn Stream<Item = Vec<T>> + Send>> {
    Box::pin(futures::stream::unfold(Some(incoming), move |state| {
        let peer = peer.clone();
        async move {
            let mut incoming = state?;
            match incoming.message().await {
                Ok(Some(frame)) => match wire::unframe::<T>(&frame, what) {
                    Ok(messages) => Some((messages, Some(incoming))),
                    Err(e) => {
                        tracing::warn!(%peer, "closing the connection: {e}");
                        None
                    }
                },
                Ok(None) => None,
                Err(status) => {
                    match status.code() {
                        // The peer went away (closed, reset, killed).
                        tonic::Code::Cancelled
                        | tonic::Code::Unavailable
                        | tonic::Code::Unknown => {
                            tracing::debug!(%peer, "connection ended: {status}")
                        }
                        // Too big, or not what the protocol says.
                        _ => tracing::warn!(%peer, "closing the connection: {}", status.message()),
                    }
                    None
                }
            }
        }
    }))
}
