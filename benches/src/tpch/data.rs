//! TPC-H data: the eight tables generated in process with `tpchgen` (the
//! generator behind `tpchgen-cli`) and written as Parquet, one folder a table,
//! and the SQL that makes them tables of a session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rask::arrow::datatypes::SchemaRef;
use rask::arrow::error::ArrowError;
use rask::arrow::record_batch::RecordBatch;
use rask::datafusion::parquet::arrow::ArrowWriter;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

/// The tables, in the order they are generated.
pub const TABLES: [&str; 8] = [
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// Batches of one part of one table.
type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Part `part` (from 1) of `parts` of `table` at scale factor `sf`, and its schema.
fn generator(table: &str, sf: f64, part: i32, parts: i32) -> Option<(SchemaRef, Batches)> {
    fn boxed<I>(schema: SchemaRef, batches: I) -> Option<(SchemaRef, Batches)>
    where
        I: Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
    {
        Some((schema, Box::new(batches)))
    }
    match table {
        "nation" => boxed(
            NationArrow::schema_ref(),
            NationArrow::new(NationGenerator::new(sf, part, parts)),
        ),
        "region" => boxed(
            RegionArrow::schema_ref(),
            RegionArrow::new(RegionGenerator::new(sf, part, parts)),
        ),
        "part" => boxed(
            PartArrow::schema_ref(),
            PartArrow::new(PartGenerator::new(sf, part, parts)),
        ),
        "supplier" => boxed(
            SupplierArrow::schema_ref(),
            SupplierArrow::new(SupplierGenerator::new(sf, part, parts)),
        ),
        "partsupp" => boxed(
            PartSuppArrow::schema_ref(),
            PartSuppArrow::new(PartSuppGenerator::new(sf, part, parts)),
        ),
        "customer" => boxed(
            CustomerArrow::schema_ref(),
            CustomerArrow::new(CustomerGenerator::new(sf, part, parts)),
        ),
        "orders" => boxed(
            OrderArrow::schema_ref(),
            OrderArrow::new(OrderGenerator::new(sf, part, parts)),
        ),
        "lineitem" => boxed(
            LineItemArrow::schema_ref(),
            LineItemArrow::new(LineItemGenerator::new(sf, part, parts)),
        ),
        _ => None,
    }
}

/// Writes the tables at scale factor `sf` under `dir` (`dir/lineitem/part-1.parquet`, …),
/// the big ones in `parts` files, unless a finished copy is there already;
/// returns `dir`.
pub fn generate(dir: &Path, sf: f64, parts: i32) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let done = dir.join("_done");
    if done.exists() {
        return Ok(dir.to_path_buf());
    }
    for table in TABLES {
        let folder = dir.join(table);
        std::fs::create_dir_all(&folder)?;
        // The small tables are one file; tpchgen makes them whole in part 1.
        let parts = if matches!(table, "nation" | "region") {
            1
        } else {
            parts.max(1)
        };
        for part in 1..=parts {
            let (schema, batches) =
                generator(table, sf, part, parts).ok_or_else(|| format!("no table {table}"))?;
            let file = std::fs::File::create(folder.join(format!("part-{part}.parquet")))?;
            let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None)?;
            for batch in batches {
                writer.write(&batch?)?;
            }
            writer.close()?;
        }
    }
    std::fs::write(&done, format!("scale factor {sf}\n"))?;
    Ok(dir.to_path_buf())
}

/// `CREATE EXTERNAL TABLE` statements for the tables under `dir`.
pub fn create_tables(dir: &Path) -> Vec<String> {
    TABLES
        .iter()
        .map(|table| {
            format!(
                "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{}/'",
                dir.join(table).display()
            )
        })
        .collect()
}

/// The 22 queries from `dir` (`q01.sql` … `q22.sql`), by name.
pub fn queries(dir: &Path) -> Result<Vec<(String, String)>, std::io::Error> {
    (1..=22)
        .map(|n| {
            let name = format!("q{n:02}");
            let sql = std::fs::read_to_string(dir.join(format!("{name}.sql")))?;
            Ok((name, sql))
        })
        .collect()
}
