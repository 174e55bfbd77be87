//! [`Structure`]: a [`DataFrame`](super::DataFrame)'s columns, partitions and
//! tasks, displayed as Dask displays a dataframe.

use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;

/// A [`DataFrame`](super::DataFrame)'s shape and cost, displayed as Dask displays a dataframe.
#[derive(Debug, Clone)]
pub struct Structure {
    /// Columns and types, the index among them.
    pub schema: SchemaRef,
    /// The columns that are the index.
    pub index: Vec<String>,
    /// Partitions of the result.
    pub npartitions: usize,
    /// The last operation (`aggregate`, `timeseries`, …).
    pub operation: String,
    /// Tasks it takes to compute.
    pub tasks: usize,
    /// Why it runs in the client rather than as tasks, when it does.
    pub in_client: Option<String>,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.index.contains(f.name()))
            .collect();
        let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let types: Vec<String> = fields
            .iter()
            .map(|f| f.data_type().to_string().to_lowercase())
            .collect();
        let widths: Vec<usize> = names
            .iter()
            .zip(&types)
            .map(|(n, t)| n.len().max(t.len()))
            .collect();
        let row = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        writeln!(f, "rask DataFrame Structure:")?;
        writeln!(f, "{}", row(&names).trim_end())?;
        writeln!(f, "{}", row(&types).trim_end())?;
        write!(f, "npartitions={}", self.npartitions)?;
        if !self.index.is_empty() {
            write!(f, ", index={}", self.index.join(", "))?;
        }
        writeln!(f)?;
        let s = if self.tasks == 1 { "" } else { "s" };
        write!(f, "rask Name: {}, {} task{s}", self.operation, self.tasks)?;
        match &self.in_client {
            Some(why) => write!(f, "\nruns in the client, as {why}"),
            None => Ok(()),
        }
    }
}
