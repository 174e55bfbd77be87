//! Running plans: how a DataFusion session is set up for rask, rask's own plan
//! nodes, and the data tasks produce and read.
//!
//! Every place that plans or runs a query (a client's session, each worker's,
//! in process or not) builds its session with [`session::new_context`] from
//! [`SessionOptions`], so they agree on the object stores and the
//! configuration; the caller adds its functions (`Registry::install`) and, for
//! SQL, the built-in tables (`datasets::install`).

mod compact;
mod data;
mod leaf;
mod map_partitions;
mod memory_pool;
pub mod object_stores;
mod partition_fn;
mod persisted;
pub mod session;
mod stage_read;
mod stage_task;
mod value;

pub use compact::compact;
pub use data::{
    FetchError, RemoteInput, RemoteSource, StageInput, StoredBatches, StoredInput, StoredResult,
    TaskData, TaskInputs, held_bytes, sliced_bytes,
};
pub(crate) use leaf::{leaf_node_methods, plain_node_methods, single_input_methods};
pub use map_partitions::{
    MapArgument, MapPartitionsExec, MapPartitionsNode, MapPartitionsPlanner, MapUnit,
};
pub use memory_pool::{Reclaim, ReclaimingPool};
pub use object_stores::ObjectStores;
pub use partition_fn::{PartitionFn, partition, partition_with};
pub use persisted::{PartitionState, PersistedExec, PersistedPartitions, PersistedTable};
pub use session::{
    BROADCAST_JOIN_BYTES, BROADCAST_JOIN_ROWS, MAX_TASKS, RaskOptions, SCAN_BYTES_PER_TASK,
    SessionOptions, new_context,
};
pub use stage_read::{ReadMode, StageReadExec};
pub use stage_task::{StageOutput, StagePlan};
pub use value::{AnyValue, Value, ValueError};

/// What a panic said.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a task panicked".to_string())
}
