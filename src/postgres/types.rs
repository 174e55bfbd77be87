//! Arrow types as PostgreSQL types, and result batches as PostgreSQL rows in
//! the text or binary format each column was asked in. The mapping and the
//! encodings are the `arrow-pg` crate's (common columns in text go through
//! [`super::text_rows`], a column at a time, to the same bytes) (PostgreSQL's own spellings: `t`/`f`,
//! `2000-01-01 00:00:00`, shortest round-tripping floats). A column of a type
//! PostgreSQL has no match for (a map) goes out as text, as Arrow displays it;
//! a half float as a `float4`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{Stream, StreamExt};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use crate::Error;

/// The PostgreSQL type a value of `data_type` is sent as; `unknown` for a type
/// PostgreSQL has no match for.
pub fn pg_type(data_type: &DataType) -> Type {
    arrow_pg::datatypes::into_pg_type(data_type).unwrap_or(Type::UNKNOWN)
}

/// The row description of `schema`, each column in the format `format` gives it.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let wire: Vec<FieldRef> = schema.fields().iter().map(wire_field).collect();
    arrow_pg::datatypes::arrow_schema_to_pg_fields(&Schema::new(wire), format, None)
}

/// `field` as it goes out: itself; a half float as a float (`float4`, which
/// `arrow-pg` maps it to but does not encode); text when PostgreSQL has no
/// type for it.
fn wire_field(field: &FieldRef) -> FieldRef {
    let sent = |data_type| Arc::new(Field::new(field.name(), data_type, field.is_nullable()));
    if field.data_type() == &DataType::Float16 {
        sent(DataType::Float32)
    } else if arrow_pg::datatypes::field_into_pg_type(field).is_ok() {
        Arc::clone(field)
    } else {
        sent(DataType::Utf8)
    }
}

/// `batch` as it goes out (see [`wire_field`]).
fn wire_batch(batch: RecordBatch) -> PgWireResult<RecordBatch> {
    let schema = batch.schema();
    let wire: Vec<FieldRef> = schema.fields().iter().map(wire_field).collect();
    if wire
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| Arc::ptr_eq(a, b))
    {
        return Ok(batch);
    }
    let options = FormatOptions::new();
    let columns = batch
        .columns()
        .iter()
        .zip(&wire)
        .map(|(column, out)| match out.data_type() {
            same if same == column.data_type() => Ok(Arc::clone(column)),
            DataType::Utf8 => {
                let shown = ArrayFormatter::try_new(column.as_ref(), &options)?;
                let text: StringArray = (0..column.len())
                    .map(|row| column.is_valid(row).then(|| shown.value(row).to_string()))
                    .collect();
                Ok(Arc::new(text) as ArrayRef)
            }
            other => datafusion::arrow::compute::cast(column, other),
        })
        .collect::<Result<Vec<_>, datafusion::arrow::error::ArrowError>>()
        .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)))?;
    RecordBatch::try_new(Arc::new(Schema::new(wire)), columns)
        .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)).into())
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
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> =
                match batch.and_then(wire_batch) {
                    Ok(batch) => match super::text_rows::encode(&batch, &fields) {
                        Some(rows) => Box::new(rows.into_iter().map(Ok)),
                        None => arrow_pg::datatypes::encode_recordbatch(Arc::clone(&fields), batch),
                    },
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

    #[tokio::test]
    async fn columns_postgres_has_no_type_for_go_out_as_text() {
        use datafusion::arrow::array::{Array, Float32Array, MapBuilder, StringBuilder};
        let mut maps = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        maps.keys().append_value("a");
        maps.values().append_value("b");
        maps.append(true).unwrap();
        maps.append(false).unwrap();
        let maps = maps.finish();
        let singles = Float32Array::from(vec![Some(1.5), None]);
        let halves = datafusion::arrow::compute::cast(&singles, &DataType::Float16).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("m", maps.data_type().clone(), true),
            Field::new("h", DataType::Float16, true),
        ]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(maps), halves]).unwrap();
        let fields = Arc::new(fields(&schema, &Format::UnifiedText).unwrap());
        let types: Vec<&Type> = fields.iter().map(|f| f.datatype()).collect();
        assert_eq!(types, [&Type::TEXT, &Type::FLOAT4]);
        let rows: Vec<DataRow> = rows(futures::stream::iter([Ok(batch)]), fields)
            .map(|row| row.unwrap())
            .collect()
            .await;
        let first = String::from_utf8_lossy(&rows[0].data);
        assert!(
            first.contains("{a: b}") && first.contains("1.5"),
            "{first:?}"
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn binary_columns_are_described_as_binary() {
        let schema = Schema::new(vec![Field::new("n", DataType::Int32, false)]);
        let fields = fields(&schema, &Format::UnifiedBinary).unwrap();
        assert_eq!(fields[0].format(), FieldFormat::Binary);
        assert_eq!(fields[0].datatype(), &Type::INT4);
    }
}
