//! SQL from Rust on the embedded local cluster: the walkthrough's groupby.
//!
//! ```text
//! cargo run --release --example sql
//! ```

#[tokio::main]
async fn main() -> rask::Result<()> {
    let client = rask::Client::local()?;

    // Lazy: planned, cut into stages, nothing computed yet.
    let df = client
        .sql("SELECT name, max(x) AS x, avg(y) AS y FROM timeseries() GROUP BY name ORDER BY name")
        .await?;
    println!("{}\n", df.structure().await?);

    // Computed on the cluster; the future's data is the whole result.
    let future = client.compute(&df).await?;
    println!("{future:?}");
    let data = future.await?;
    let batches: Vec<_> = data.batches().cloned().collect();
    let schema = df.schema();
    print!(
        "{}",
        rask::output::to_string(rask::output::Format::Table, schema, &batches, Some(10))?
    );
    Ok(())
}
