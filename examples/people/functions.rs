//! The functions of the walkthrough's second half, shared by
//! `examples/people.rs` and the custom worker binary
//! (`cli/examples/custom_worker.rs`), which carries them to workers in other
//! processes.

use linfa::prelude::Predict;
use linfa_linear::FittedLinearRegression;
use ndarray::Array2;
use rask::udf::Registry;
use serde::{Deserialize, Serialize};

/// Someone with a personal value, as the walkthrough's `Person` class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Their name.
    pub name: String,
    /// A random value in [0, 1).
    pub personal_value: f64,
}

impl std::fmt::Display for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}, {}>", self.name, self.personal_value)
    }
}

/// `a.personal_value + b.personal_value`.
pub fn add_two_people(a: &Person, b: &Person) -> f64 {
    a.personal_value + b.personal_value
}

/// `p.personal_value + v`.
pub fn add_a_value(p: &Person, v: &i64) -> f64 {
    p.personal_value + *v as f64
}

/// The model's prediction for one `x`.
pub fn run_prediction(model: &FittedLinearRegression<f64>, x: &f64) -> Result<f64, String> {
    let input = Array2::from_shape_vec((1, 1), vec![*x]).map_err(|e| e.to_string())?;
    let predicted = model.predict(&input);
    predicted
        .first()
        .copied()
        .ok_or_else(|| "the model predicted nothing".to_string())
}

/// The functions workers must carry to run the example.
pub fn registry() -> Registry {
    Registry::new()
        .with_function("add_two_people", add_two_people)
        .with_function("add_a_value", add_a_value)
        .with_try_function("run_prediction", run_prediction)
}
