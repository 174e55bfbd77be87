//! Running plans: how a DataFusion session is set up for rask.
//!
//! Every place that plans or runs a query (the client today; the workers once the
//! scheduler runs plan fragments) builds its session with [`session::new_context`],
//! so they agree on the functions, the object stores and the configuration.

pub mod object_stores;
pub mod session;

pub use object_stores::ObjectStores;
pub use session::new_context;
