//! The client's side of Dask's futures API: registering functions, computing
//! delayed calls and dataframes into [`Future`]s, and waiting on many.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream};

use super::delayed::{Delayed, Function, compute};
use super::{Client, DataFrame, Future, FutureStatus};
use crate::udf::{Fallible, Infallible, TaskFunction};
use crate::worker::FunctionJob;
use crate::{Key, Result};

/// What [`Client::compute`] computes: a dataframe, a delayed call, or many.
pub trait Compute {
    /// A future, or one per delayed call.
    type Output;

    /// Submits it on `client`'s cluster.
    fn compute_on<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, Result<Self::Output>>;
}

impl Compute for DataFrame {
    type Output = Future;

    /// The frame's whole result, in one bucket (a `finalize` task gathers the
    /// final partitions).
    fn compute_on<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, Result<Future>> {
        Box::pin(async move {
            let mut graph = self.stages().await?;
            // The result is gathered on the cluster: its final merge runs there too.
            graph.restore_final_merge();
            let connection = &client.connection;
            let mut tasks = connection.cluster().tasks(&graph)?;
            let finals = graph.keys(graph.stages.len() - 1);
            let key = Key::new(format!("finalize-{}", graph.token));
            let spec = crate::scheduler::TaskSpec::new(key.clone(), finals);
            tasks.push((spec, Arc::new(crate::worker::Job::Concat)));
            Ok(connection.submit(tasks, vec![key]).remove(0))
        })
    }
}

impl<T> Compute for Delayed<T> {
    type Output = Future;

    fn compute_on<'a>(&'a self, _client: &'a Client) -> BoxFuture<'a, Result<Future>> {
        Box::pin(async move { Ok(Delayed::compute(self)) })
    }
}

impl<T> Compute for [Delayed<T>] {
    type Output = Vec<Future>;

    fn compute_on<'a>(&'a self, _client: &'a Client) -> BoxFuture<'a, Result<Vec<Future>>> {
        Box::pin(async move { Ok(compute(self)) })
    }
}

impl<T, const N: usize> Compute for [Delayed<T>; N] {
    type Output = Vec<Future>;

    fn compute_on<'a>(&'a self, _client: &'a Client) -> BoxFuture<'a, Result<Vec<Future>>> {
        Box::pin(async move { Ok(compute(self)) })
    }
}

impl<T> Compute for Vec<Delayed<T>> {
    type Output = Vec<Future>;

    fn compute_on<'a>(&'a self, _client: &'a Client) -> BoxFuture<'a, Result<Vec<Future>>> {
        Box::pin(async move { Ok(compute(self)) })
    }
}

impl Client {
    /// Registers `function` (arguments by reference, serde types in and out)
    /// under `name` for this client; calls of it become tasks
    /// ([`Function::delayed`], [`Function::submit`], [`Function::map`]).
    ///
    /// On the local cluster any function or closure runs as it is. Workers of
    /// other processes run it by name, so their binary must register the same
    /// function under the same name (`rask_cli::main_with`); registering one
    /// that no worker of a remote cluster carries is an error.
    pub fn register<Args, F: TaskFunction<Args, Infallible>>(
        &self,
        name: &str,
        function: F,
    ) -> Result<Function<Args, F::Output>> {
        self.function_of(name, function.into_task_fn())
    }

    /// [`register`](Self::register) for a function returning `Result<T, E>`:
    /// an error fails the task with the function's name and the error's message.
    pub fn register_fallible<Args, F: TaskFunction<Args, Fallible>>(
        &self,
        name: &str,
        function: F,
    ) -> Result<Function<Args, F::Output>> {
        self.function_of(name, function.into_task_fn())
    }

    fn function_of<Args, R>(
        &self,
        name: &str,
        code: crate::udf::TaskFn,
    ) -> Result<Function<Args, R>> {
        let info = self.info();
        if !info.is_local() {
            crate::cluster::check_carried(&[name.to_string()].into(), &info.workers)?;
        }
        let job = FunctionJob::new(name, code, true);
        Ok(Function::new(job, Arc::clone(&self.connection)))
    }

    /// Starts computing `what` (a [`DataFrame`], a [`Delayed`] call, or a
    /// slice, array or `Vec` of them) and returns its future(s), as Dask's
    /// `client.compute`.
    pub async fn compute<C: Compute + ?Sized>(&self, what: &C) -> Result<C::Output> {
        what.compute_on(self).await
    }

    /// Keeps `future`'s key under `name` on the scheduler, for any client to
    /// get ([`get_published`](Self::get_published)), until unpublished: it
    /// outlives this client (Dask's `publish_dataset`). Returns once the
    /// scheduler has it: a client that asks next finds it.
    pub async fn publish(&self, name: &str, future: &Future) -> Result<()> {
        self.connection.publish(name, future.key()).await
    }

    /// Stops publishing `name`; its key goes once no future holds it.
    pub fn unpublish(&self, name: &str) {
        self.connection.unpublish(name);
    }

    /// A future of what is published as `name`, by this or another client;
    /// an error when nothing is.
    pub async fn get_published(&self, name: &str) -> Result<Future> {
        self.connection.published(name).await
    }

    /// Runs `function` on `args` (Dask's `client.submit`); see [`Function::submit`].
    pub fn submit<Args, R>(
        &self,
        function: &Function<Args, R>,
        args: impl super::CallArgs<Args>,
    ) -> Future {
        function.submit(args)
    }

    /// Runs `function` on each of `calls` (Dask's `client.map`); see [`Function::map`].
    pub fn map<Args, R, C: super::CallArgs<Args>>(
        &self,
        function: &Function<Args, R>,
        calls: impl IntoIterator<Item = C>,
    ) -> Vec<Future> {
        function.map(calls)
    }
}

/// Waits until every future is done (finished, erred or cancelled), without
/// fetching results (Dask's `wait`); returns how each ended.
pub async fn wait(futures: &[Future]) -> Vec<FutureStatus> {
    let mut statuses = Vec::with_capacity(futures.len());
    // Waiting for the last first wakes this about once, not once per future.
    for future in futures.iter().rev() {
        statuses.push(future.wait().await);
    }
    statuses.reverse();
    statuses
}

/// The futures, each as soon as it is done, in the order they finish (Dask's
/// `as_completed`).
pub fn as_completed(futures: impl IntoIterator<Item = Future>) -> impl Stream<Item = Future> {
    futures
        .into_iter()
        .map(|future| async move {
            future.wait().await;
            future
        })
        .collect::<FuturesUnordered<_>>()
}

/// The values of `futures`, read as `T`s, in order; the error of the first
/// that failed (or whose value is not a `T`).
pub async fn gather<T>(futures: &[Future]) -> Result<Vec<T>>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let Some(first) = futures.first() else {
        return Ok(Vec::new());
    };
    let data = first.connection().gather(futures).await?;
    futures
        .iter()
        .zip(data)
        .map(|(future, data)| {
            data.get::<T>()
                .cloned()
                .map_err(|source| crate::Error::Decode {
                    key: future.key().clone(),
                    source,
                })
        })
        .collect()
}
