//! Arrow types as PostgreSQL types, and Arrow values as PostgreSQL's text format.

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};

use crate::Result;

/// The PostgreSQL type a column of `data_type` is sent as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        // Past i64: only numeric holds every value.
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Dictionary(_, value) => pg_type(value),
        _ => Type::TEXT,
    }
}

/// The row description of `schema`: every column in text format.
pub fn fields(schema: &Schema) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .map(|f| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                FieldFormat::Text,
            )
        })
        .collect()
}

/// One column's values in PostgreSQL's text format.
pub struct TextColumn<'a> {
    array: &'a dyn Array,
    formatter: ArrayFormatter<'a>,
}

impl TextColumn<'_> {
    /// Row `row` as text; `None` for null.
    pub fn value(&self, row: usize) -> Option<String> {
        if self.array.is_null(row) {
            return None;
        }
        Some(self.formatter.value(row).to_string())
    }
}

/// PostgreSQL's spellings: `2000-01-01 00:00:00`, not Arrow's `T` between.
fn options() -> FormatOptions<'static> {
    FormatOptions::new()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"))
}

/// The columns of `batch`, formatted as text.
pub fn texts(batch: &RecordBatch) -> Result<Vec<TextColumn<'_>>> {
    let options = options();
    batch
        .columns()
        .iter()
        .map(|column| {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(datafusion::error::DataFusionError::from)?;
            Ok(TextColumn {
                array: column.as_ref(),
                formatter,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn values_are_written_as_postgres_reads_them() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, false),
            Field::new("s", DataType::Utf8, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(Float64Array::from(vec![0.5, -1.25])),
                Arc::new(StringArray::from(vec!["Alice", "Bob"])),
                Arc::new(TimestampNanosecondArray::from(vec![
                    946_684_800_000_000_000,
                    0,
                ])),
            ],
        )
        .unwrap();
        let texts = texts(&batch).unwrap();
        let row = |r: usize| texts.iter().map(|c| c.value(r)).collect::<Vec<_>>();
        assert_eq!(
            row(0),
            [
                Some("7".into()),
                Some("0.5".into()),
                Some("Alice".into()),
                Some("2000-01-01 00:00:00".into())
            ]
        );
        assert_eq!(row(1)[0], None);
        let types: Vec<Type> = fields(&schema)
            .iter()
            .map(|f| f.datatype().clone())
            .collect();
        assert_eq!(
            types,
            [Type::INT8, Type::FLOAT8, Type::TEXT, Type::TIMESTAMP]
        );
    }
}
