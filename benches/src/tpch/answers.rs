//! Query answers as rows of text, and whether two engines gave the same one:
//! the same rows (in the same order, or in any order), numbers equal to a
//! relative 1e-6 (engines add floats in different orders and print decimals
//! differently). Shared by the suites that check answers: `tpch`, `chaos` and
//! `walkthrough` (and the TPC-H integration test).

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
                return Err(format!(
                    "row {i}, column {j}: {x}, expected {y} (row [{}], expected [{}])",
                    a.join(", "),
                    b.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// `rows` in an order that does not depend on the engine: sorted by their
/// values, decimals rounded to 6 significant digits for the sort (the same
/// numbers summed in another order sort alike).
pub fn sorted(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.sort_by_cached_key(|row| row.iter().map(|v| sort_key(v)).collect::<Vec<_>>());
    rows
}

/// A value as [`sorted`] compares it: a decimal number rounded to 6
/// significant digits, anything else (integers, text, `NULL`) as it is.
fn sort_key(value: &str) -> String {
    let decimal = value.contains(['.', 'e', 'E']);
    match value.trim().parse::<f64>() {
        // `+ 0.0` makes -0 into 0, which `same` takes as equal.
        Ok(x) if decimal && x.is_finite() => format!("{:.5e}", x + 0.0),
        _ => value.to_string(),
    }
}

/// Fails unless answers `a` and `b` hold the same rows in any order (see
/// [`sorted`] and [`same`]), naming `measurement` and the first row that differs.
pub fn check(
    measurement: &str,
    (a_name, a): (&str, &[RecordBatch]),
    (b_name, b): (&str, &[RecordBatch]),
) -> Result<(), Box<dyn std::error::Error>> {
    let in_order = |batches: &[RecordBatch]| rows(batches).map(sorted);
    same(&in_order(a)?, &in_order(b)?).map_err(|e| {
        format!("{measurement}: {a_name}'s answer differs from {b_name}'s: {e}").into()
    })
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

    #[test]
    fn sorted_rows_compare_in_any_order() {
        let table = |v: &[[&str; 2]]| {
            v.iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        // The same sums, added in another order: the rows sort alike.
        let ours = table(&[["b", "0.30000000000000004"], ["a", "10"], ["a", "9"]]);
        let theirs = table(&[["a", "9"], ["b", "0.3"], ["a", "10"]]);
        assert!(same(&sorted(ours.clone()), &sorted(theirs)).is_ok());
        let other = table(&[["a", "9"], ["b", "0.4"], ["a", "10"]]);
        assert!(same(&sorted(ours), &sorted(other)).is_err());
        assert_eq!(sort_key("-0.0"), sort_key("0.0"));
        assert_eq!(sort_key("1234567"), "1234567");
    }
}
