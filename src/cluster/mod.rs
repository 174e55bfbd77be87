//! What describes a cluster, shared by every layer that shows one or talks to
//! one: its workers and their state ([`ClusterInfo`], [`WorkerState`]), the
//! questions a client asks its scheduler ([`Question`], [`Answer`]), and the
//! link a client talks through ([`ClusterLink`]). The client, the network
//! layer and the dashboard import it rather than each other.

mod info;
mod link;

pub use info::{Answer, ClusterInfo, IN_PROCESS, Question, WorkerInfo, WorkerState, check_carried};
pub use link::{ClusterLink, Message, stage_tasks};
