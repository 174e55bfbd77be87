//! The walkthrough's second half, "Dask as general compute", step by step:
//! plain Rust functions over your own objects, as delayed calls and futures,
//! with scattered data and a fitted model.
//!
//! ```text
//! cargo run --release --example people                          # the local cluster
//! cargo run --release --example people -- --scheduler HOST:8786  # a remote one
//! ```
//!
//! A remote cluster's workers must carry `add_two_people`, `add_a_value` and
//! `run_prediction`: start them with the custom worker binary
//! (`cli/examples/custom_worker.rs`), which registers this example's functions.

#[path = "people/functions.rs"]
mod functions;

use std::time::Instant;

use functions::Person;
use linfa::Dataset;
use linfa::prelude::Fit;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use rask::delayed;
use rask::{Client, Delayed};

/// A small random number generator (splitmix64), so runs can be repeated.
struct Random(u64);

impl Random {
    /// A value in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let client = match args.iter().position(|a| a == "--scheduler") {
        Some(i) => {
            let address = args
                .get(i + 1)
                .ok_or("--scheduler needs an address, HOST:PORT")?;
            let security = rask::internals::net::Security::from_env()?;
            let client =
                Client::connect_with_registry(address, security, functions::registry()).await?;
            client
                .wait_for_workers(1, std::time::Duration::from_secs(30))
                .await?;
            client
        }
        None => Client::local()?,
    };
    println!("{client}\n");
    let mut random = Random(42);

    // Generate some names, create Person objects.
    let names = client
        .timeseries()
        .build()?
        .unique("name")?
        .sort_values([("name", true)])?
        .compute()
        .await?;
    let names: Vec<String> = rask::output::format_rows(&names)?
        .into_iter()
        .flatten()
        .collect();
    let list_of_people: Vec<Person> = names
        .into_iter()
        .map(|name| Person {
            name,
            personal_value: random.next(),
        })
        .collect();
    let shown: Vec<String> = list_of_people.iter().map(Person::to_string).collect();
    println!(
        "list_of_people ({})\n[{}]\n",
        list_of_people.len(),
        shown.join(",\n ")
    );

    // A delayed add_two_people for every ordered pair: nothing runs yet.
    let add_two_people = client.register("add_two_people", functions::add_two_people)?;
    let delayed_operations: Vec<Delayed<f64>> = list_of_people
        .iter()
        .flat_map(|a| {
            list_of_people
                .iter()
                .filter(move |b| b.name != a.name)
                .map(move |b| (a, b))
        })
        .map(|(a, b)| add_two_people.delayed((a.clone(), b.clone())))
        .collect();
    println!("delayed_operations[:10] (of {})", delayed_operations.len());
    for operation in &delayed_operations[..10] {
        println!("{operation:?}");
    }
    delayed::visualize(&delayed_operations[..10], "people-add-two.svg")?;
    println!("task graph written to people-add-two.svg\n");

    // Computed: futures, then their values.
    let started = Instant::now();
    let added_operation = client.compute(&delayed_operations).await?;
    println!("added_operation[:5]");
    for future in &added_operation[..5] {
        println!("{future:?}");
    }
    let values: Vec<f64> = rask::gather(&added_operation).await?;
    println!(
        "all {} computed in {:.1} ms",
        values.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    println!("added_operation[0].result()\n{}\n", values[0]);
    let expected = functions::add_two_people(&list_of_people[0], &list_of_people[1]);
    assert_eq!(values[0], expected, "the first pair's sum");

    // Scatter the people once; tasks read them where they are.
    let scattered_list_of_people = client.scatter_each(list_of_people.clone()).await?;
    println!(
        "scattered_list_of_people[:3] (of {})",
        scattered_list_of_people.len()
    );
    for future in &scattered_list_of_people[..3] {
        println!("{future:?}");
    }
    let add_a_value = client.register("add_a_value", functions::add_a_value)?;
    let delayed_operations: Vec<Delayed<f64>> = scattered_list_of_people
        .iter()
        .enumerate()
        .map(|(i, person)| add_a_value.delayed((person, i as i64)))
        .collect();
    delayed::visualize(&delayed_operations[..10], "people-add-a-value.svg")?;
    let computed_add_operation = client.compute(&delayed_operations).await?;
    let first: f64 = computed_add_operation[0].value().await?;
    println!("\ncomputed_add_operation[0].result()\n{first}\n");

    // A model fitted here, scattered once, used by 10 parallel predictions.
    let x: Vec<f64> = (0..100).map(|_| random.next()).collect();
    let y: Vec<f64> = (0..100).map(|_| random.next()).collect();
    let dataset = Dataset::new(Array2::from_shape_vec((100, 1), x)?, Array1::from(y));
    let my_model = LinearRegression::default().fit(&dataset)?;
    let x_new: Vec<f64> = (0..10).map(|_| random.next()).collect();
    let my_model_scattered = client.scatter(my_model.clone()).await?;
    let run_prediction = client.register_fallible("run_prediction", functions::run_prediction)?;
    let lots_of_predictions: Vec<Delayed<f64>> = x_new
        .iter()
        .map(|&x| run_prediction.delayed((&my_model_scattered, x)))
        .collect();
    let predictions = client.compute(&lots_of_predictions).await?;
    let predicted: Vec<f64> = rask::gather(&predictions).await?;
    println!("predictions[0].result()\n[{}]", predicted[0]);
    let here = functions::run_prediction(&my_model, &x_new[0])?;
    assert!(
        (predicted[0] - here).abs() < 1e-12,
        "the cluster's prediction is the model's"
    );
    println!(
        "{} predictions, the same as the model's here",
        predicted.len()
    );
    Ok(())
}
