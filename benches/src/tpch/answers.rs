//! Query answers as rows of text, and whether two engines gave the same one:
//! the same rows in the same order, numbers equal to a relative 1e-6 (engines
//! add floats in different orders and print decimals differently).

use rask::arrow::record_batch::RecordBatch;

/// The rows of `batches`, each value as text (`NULL` for a null).
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, String> {
    rask::output::format_rows(batches).map_err(|e| e.to_string())
}

/// `Ok` when `ours` and `theirs` are the same answer; else the first difference.
pub fn same(ours: &[Vec<String>], theirs: &[Vec<String>]) -> Result<(), String> {
    if ours.len() != theirs.len() {
        return Err(format!("{} rows, expected {}", ours.len(), theirs.len()));
    }
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if a.len() != b.len() {
            return Err(format!(
                "row {i}: {} columns, expected {}",
                a.len(),
                b.len()
            ));
        }
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            if !same_value(x, y) {
                return Err(format!("row {i}, column {j}: {x}, expected {y}"));
            }
        }
    }
    Ok(())
}

fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_loosely_text_exactly() {
        let row = |v: &[&str]| vec![v.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        assert!(same(&row(&["1234.50", "A"]), &row(&["1234.5", "A"])).is_ok());
        assert!(same(&row(&["0.3333333333"]), &row(&["0.33333333333333"])).is_ok());
        assert!(same(&row(&["1.5"]), &row(&["1.6"])).is_err());
        assert!(same(&row(&["A"]), &row(&["B"])).is_err());
        assert!(same(&row(&["A"]), &[]).is_err());
    }
}
