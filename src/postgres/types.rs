//! Arrow types as PostgreSQL types, and result batches as PostgreSQL rows in
//! the text or binary format each column was asked in. The mapping and the
//! encodings are the `arrow-pg` crate's (PostgreSQL's own spellings: `t`/`f`,
//! `2000-01-01 00:00:00`, shortest round-tripping floats).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

/// The PostgreSQL type a value of `data_type` is sent as; `unknown` for a type
/// PostgreSQL has no match for.
pub fn pg_type(data_type: &DataType) -> Type {
    arrow_pg::datatypes::into_pg_type(data_type).unwrap_or(Type::UNKNOWN)
}

/// The row description of `schema`, each column in the format `format` gives it.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)
}

/// The rows of `batches`, encoded as `fields` describe them.
pub fn rows<S>(
    batches: S,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + use<S>
where
    S: Stream<Item = PgWireResult<RecordBatch>> + Send,
{
    batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => arrow_pg::datatypes::encode_recordbatch(Arc::clone(&fields), batch),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            futures::stream::iter(rows)
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use pgwire::api::results::FieldFormat;

    use super::*;

    #[tokio::test]
    async fn values_are_written_as_postgres_reads_them() {
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
        let format = Format::UnifiedText;
        let fields = Arc::new(fields(&schema, &format).unwrap());
        let types: Vec<Type> = fields.iter().map(|f| f.datatype().clone()).collect();
        assert_eq!(
            types,
            [Type::INT8, Type::FLOAT8, Type::TEXT, Type::TIMESTAMP]
        );
        assert!(fields.iter().all(|f| f.format() == FieldFormat::Text));

        let batches = futures::stream::iter([Ok(batch)]);
        let rows: Vec<DataRow> = rows(batches, fields)
            .map(|row| row.unwrap())
            .collect()
            .await;
        assert_eq!(rows.len(), 2);
        let first = &rows[0];
        let text = String::from_utf8_lossy(&first.data);
        for value in ["7", "0.5", "Alice", "2000-01-01 00:00:00"] {
            assert!(text.contains(value), "{value} in {text:?}");
        }
        assert_eq!(rows[1].field_count, 4);
    }

    #[test]
    fn binary_columns_are_described_as_binary() {
        let schema = Schema::new(vec![Field::new("n", DataType::Int32, false)]);
        let fields = fields(&schema, &Format::UnifiedBinary).unwrap();
        assert_eq!(fields[0].format(), FieldFormat::Binary);
        assert_eq!(fields[0].datatype(), &Type::INT4);
    }
}
