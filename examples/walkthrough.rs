//! The walkthrough's dataframe half, step by step, as Dask users run it:
//! a lazy timeseries, a groupby-agg (persisted, then queried again), an
//! `apply`, a `map_partitions`.
//!
//! ```text
//! cargo run --release --example walkthrough                          # the local cluster
//! cargo run --release --example walkthrough -- --scheduler HOST:8786  # a remote one
//! ```
//!
//! A remote cluster's workers must carry `square` and `my_multi_function`:
//! start them with the custom worker binary (`cli/examples/custom_worker.rs`),
//! which registers this example's functions.

#[path = "walkthrough/functions.rs"]
mod functions;

use rask::Client;
use rask::datafusion::prelude::{col, lit};

#[tokio::main]
async fn main() -> rask::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let client = match args.iter().position(|a| a == "--scheduler") {
        Some(i) => {
            let address = args.get(i + 1).ok_or_else(|| {
                rask::Error::Config("--scheduler needs an address, HOST:PORT".into())
            })?;
            let security = rask::internals::net::Security::from_env()?;
            Client::connect_with_registry(address, security, functions::registry()).await?
        }
        None => Client::with_config(rask::Config {
            registry: functions::registry(),
            ..rask::Config::default()
        })?,
    };
    println!("{client}\n");

    // Make some random data: nothing is generated yet, only the tasks to.
    let df = client.timeseries().build()?;
    println!("df\n{}\n", df.structure().await?);

    // A lazy groupby-agg.
    let some_groupby_agg_operation = df
        .clone()
        .groupby(["name"])
        .agg([("x", "max"), ("y", "mean")])?;
    println!(
        "some_groupby_agg_operation\n{}\n",
        some_groupby_agg_operation.structure().await?
    );
    println!("{}", some_groupby_agg_operation.explain().await?);
    some_groupby_agg_operation
        .visualize("walkthrough-groupby.svg")
        .await?;
    println!("task graph written to walkthrough-groupby.svg\n");

    // Computed on the cluster, and kept there: later queries read the
    // result in the workers' memory instead of computing it again.
    let some_groupby_agg_computed = some_groupby_agg_operation.persist().await?;
    println!(
        "some_groupby_agg_computed\n{}\n",
        some_groupby_agg_computed.structure().await?
    );
    println!(
        "some_groupby_agg_computed.head()\n{}\n",
        some_groupby_agg_computed
            .clone()
            .limit(5)?
            .to_table(None)
            .await?
    );
    let positive_y = some_groupby_agg_computed.filter(col("y").gt(lit(0.0)))?;
    println!(
        "groups with a positive mean y\n{}\n",
        positive_y.structure().await?
    );
    println!("{}", positive_y.to_table(None).await?);

    // df['x2'] = df['x'].apply(lambda val: val**2), typed: no meta= guess.
    let square = rask::udf::scalar("square", functions::square);
    let x2 = df.clone().apply("x", &square)?;
    println!("df['x'].apply(square)\n{}\n", x2.structure().await?);
    let df = df.assign("x2", square.call(vec![col("x")]))?;
    println!("df\n{}\n", df.structure().await?);

    // map_partitions: several new columns from one function over each partition.
    let multi_df = df.map_partitions(&functions::my_multi_partition())?;
    println!("multi_df\n{}\n", multi_df.structure().await?);
    let multi_df_computed = multi_df.sort_values([("timestamp", true)])?;
    println!(
        "multi_df_computed\n{}",
        multi_df_computed.to_table(Some(10)).await?
    );
    Ok(())
}
