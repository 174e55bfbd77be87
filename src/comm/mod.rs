//! Between processes: plans, control messages and results on the network.
//!
//! The local cluster needs none of this (its scheduler, workers and clients
//! share memory). A cluster of processes runs the same scheduler and workers;
//! this layer carries what passes between them (over the sockets of
//! [`net`](crate::net)):
//!
//! - [`wire`]: the control messages and their framing;
//! - [`codec`]: plans as `datafusion-proto` bytes, rask's own nodes included;
//! - [`flight`]: the Arrow Flight service of every process (results by
//!   `do_get`, control streams by `do_exchange`), token and TLS checked;
//! - [`SchedulerNode`], [`run_worker`] and [`RemoteCluster`]: the scheduler's,
//!   a worker's and a client's side;
//! - [`SqlSession`]: SQL the scheduler plans and runs for thin clients.

pub mod codec;
mod fetch;
pub(crate) mod flight;
pub mod plan_nodes;
mod remote_cluster;
mod scheduler_node;
mod sql_session;
pub mod wire;
mod worker_node;

pub use flight::{MAX_ARGUMENT, MAX_MESSAGE, MAX_TICKET, report_death};
pub use remote_cluster::{RemoteCluster, SqlAnswer};
pub use scheduler_node::{SchedulerNode, SchedulerOptions};
pub use sql_session::{OpenSqlSession, SqlSession};
pub use wire::{EncodedJob, EncodedStage, WorkerDeath};
pub use worker_node::{WorkerOptions, run_worker};
