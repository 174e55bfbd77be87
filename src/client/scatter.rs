//! `scatter`: values the client places on workers once, for many tasks to read.

use std::future::IntoFuture;

use futures::future::BoxFuture;
use serde::Serialize;

use super::{Client, Future};
use crate::exec::Value;
use crate::{Key, Result};

/// A value on its way to the cluster; await it for its future. By default it
/// goes to one worker (the next thread round-robin); [`broadcast`](Self::broadcast)
/// sends it to all.
#[must_use = "a scatter does nothing until awaited"]
pub struct Scatter<T> {
    client: Client,
    value: T,
    broadcast: bool,
}

impl<T: Serialize + Send + Sync + 'static> Scatter<T> {
    /// Places the value on every worker (for a value many tasks read), or,
    /// with `false`, on one.
    pub fn broadcast(mut self, broadcast: bool) -> Self {
        self.broadcast = broadcast;
        self
    }
}

impl<T: Serialize + Send + Sync + 'static> IntoFuture for Scatter<T> {
    type Output = Result<Future>;
    type IntoFuture = BoxFuture<'static, Result<Future>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let key = scatter_key::<T>();
            let value = Value::new(self.value);
            self.client
                .connection
                .scatter(key, value, self.broadcast)
                .await
        })
    }
}

impl Client {
    /// Places `value` on one worker (round-robin over the cluster's threads) and
    /// returns a finished future of it, keyed `<type>-<token>`. Tasks that read
    /// it run where it is and never receive it again; it counts in that
    /// worker's memory. It cannot be recomputed: if its worker dies, it and
    /// what reads it err (`DataLost`).
    ///
    /// ```no_run
    /// # async fn demo(client: rask::Client) -> rask::Result<()> {
    /// let weights = client.scatter(vec![1.5f64, -0.5]).await?;
    /// let everywhere = client.scatter(vec![0.1f64; 1024]).broadcast(true).await?;
    /// # Ok(()) }
    /// ```
    pub fn scatter<T: Serialize + Send + Sync + 'static>(&self, value: T) -> Scatter<T> {
        Scatter {
            client: self.clone(),
            value,
            broadcast: false,
        }
    }

    /// [`scatter`](Self::scatter) onto every worker.
    pub fn broadcast<T: Serialize + Send + Sync + 'static>(&self, value: T) -> Scatter<T> {
        self.scatter(value).broadcast(true)
    }

    /// Scatters each of `values` on its own (Dask's `client.scatter(list)`),
    /// spread round-robin over the workers' threads; their futures, in order.
    pub async fn scatter_each<T: Serialize + Send + Sync + 'static>(
        &self,
        values: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Future>> {
        let mut futures = Vec::new();
        for value in values {
            futures.push(self.scatter(value).await?);
        }
        Ok(futures)
    }
}

/// A fresh key for a scattered `T`: `<type>-<token>`, as Dask names them.
fn scatter_key<T>() -> Key {
    let name = std::any::type_name::<T>();
    // `alloc::vec::Vec<f64>` → `Vec`
    let short = name.split('<').next().unwrap_or(name);
    let short: String = short
        .rsplit("::")
        .next()
        .unwrap_or(short)
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let short = if short.is_empty() { "value" } else { &short };
    Key::new(format!("{short}-{}", super::call::fresh_token()))
}
