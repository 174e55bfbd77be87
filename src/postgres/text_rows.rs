//! Result batches as PostgreSQL text rows, a column at a time.
//!
//! The general encoder (`arrow-pg`) looks up each value's column type and
//! formats it through pgwire's per-value writers, a timestamp parsing its
//! date style and `strftime` pattern each time. Most results are integers,
//! floats, text, booleans, dates and timestamps asked for as text: for those
//! this module sets up one writer per column and writes every row of a batch
//! into one buffer, the bytes the general encoder would write (PostgreSQL's
//! spellings as pgwire gives them: `t`/`f`, shortest round-tripping floats
//! (what an `extra_float_digits` of 1 or more gives; a lower setting is not
//! applied, here or by the general encoder),
//! `2000-01-01 00:00:00.000000`). Anything else goes to the general encoder.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

/// Writes the text of one non-null value of a column, by row.
type Writer<'a> = Box<dyn Fn(usize, &mut BytesMut) + 'a>;

/// The rows of `batch` in text, or `None` if a column is asked for in binary
/// or is of a type only the general encoder writes.
pub(super) fn encode(batch: &RecordBatch, fields: &[FieldInfo]) -> Option<Vec<DataRow>> {
    if fields.len() != batch.num_columns() || fields.iter().any(|f| f.format() != FieldFormat::Text)
    {
        return None;
    }
    let columns = batch.columns();
    let writers = columns.iter().map(writer).collect::<Option<Vec<_>>>()?;
    let field_count = i16::try_from(columns.len()).ok()?;
    let mut out = BytesMut::with_capacity(batch.num_rows() * columns.len() * 16);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (column, write) in columns.iter().zip(&writers) {
            if column.is_null(row) {
                out.put_i32(-1);
                continue;
            }
            let at = out.len();
            out.put_i32(0);
            write(row, &mut out);
            let length = (out.len() - at - 4) as i32;
            out[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        rows.push(DataRow::new(out.split(), field_count));
    }
    Some(rows)
}

/// The writer of `column`'s values, if it is of a type written here.
fn writer(column: &ArrayRef) -> Option<Writer<'_>> {
    macro_rules! integers {
        ($t:ty) => {{
            let values = column.as_primitive::<$t>();
            Box::new(move |row, out: &mut BytesMut| {
                out.put_slice(itoa::Buffer::new().format(values.value(row)).as_bytes())
            })
        }};
    }
    macro_rules! strings {
        ($values:expr) => {{
            let values = $values;
            Box::new(move |row, out: &mut BytesMut| out.put_slice(values.value(row).as_bytes()))
        }};
    }
    Some(match column.data_type() {
        DataType::Int8 => integers!(Int8Type),
        DataType::Int16 => integers!(Int16Type),
        DataType::Int32 => integers!(Int32Type),
        DataType::Int64 => integers!(Int64Type),
        DataType::Float32 => {
            let values = column.as_primitive::<Float32Type>();
            Box::new(move |row, out: &mut BytesMut| put_float(out, values.value(row)))
        }
        DataType::Float64 => {
            let values = column.as_primitive::<Float64Type>();
            Box::new(move |row, out: &mut BytesMut| put_float(out, values.value(row)))
        }
        DataType::Boolean => {
            let values = column.as_boolean();
            Box::new(move |row, out: &mut BytesMut| {
                out.put_u8(if values.value(row) { b't' } else { b'f' })
            })
        }
        DataType::Utf8 => strings!(column.as_string::<i32>()),
        DataType::LargeUtf8 => strings!(column.as_string::<i64>()),
        DataType::Utf8View => strings!(column.as_string_view()),
        DataType::Date32 => {
            let values = column.as_primitive::<Date32Type>();
            Box::new(move |row, out: &mut BytesMut| {
                put_date(out, i64::from(values.value(row)));
            })
        }
        DataType::Timestamp(unit, None) => {
            let (values, per_second) = match unit {
                TimeUnit::Second => (column.as_primitive::<TimestampSecondType>().values(), 1),
                TimeUnit::Millisecond => (
                    column.as_primitive::<TimestampMillisecondType>().values(),
                    1_000,
                ),
                TimeUnit::Microsecond => (
                    column.as_primitive::<TimestampMicrosecondType>().values(),
                    1_000_000,
                ),
                TimeUnit::Nanosecond => (
                    column.as_primitive::<TimestampNanosecondType>().values(),
                    1_000_000_000,
                ),
            };
            Box::new(move |row, out: &mut BytesMut| {
                put_timestamp(out, values[row], per_second);
            })
        }
        _ => return None,
    })
}

/// Writes a float as pgwire does with `extra_float_digits` 1 (PostgreSQL's
/// default since 12): `NaN`, `inf`, `-inf`, `0`, else the shortest text that
/// reads back as the same float (ryu's).
fn put_float<F: ryu::Float + Into<f64>>(out: &mut BytesMut, value: F) {
    let wide: f64 = value.into();
    let special: &[u8] = if wide.is_nan() {
        b"NaN"
    } else if wide == f64::INFINITY {
        b"inf"
    } else if wide == f64::NEG_INFINITY {
        b"-inf"
    } else if wide == 0.0 {
        b"0"
    } else {
        out.put_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        return;
    };
    out.put_slice(special);
}

/// Writes `days` since 1970-01-01 as `YYYY-MM-DD`.
fn put_date(out: &mut BytesMut, days: i64) {
    let (year, month, day) = civil_from_days(days);
    put_year(out, year);
    out.put_u8(b'-');
    put_two(out, month);
    out.put_u8(b'-');
    put_two(out, day);
}

/// Writes a timestamp of `per_second` units since the epoch as
/// `YYYY-MM-DD HH:MM:SS.ffffff` (microseconds, truncated).
fn put_timestamp(out: &mut BytesMut, value: i64, per_second: i64) {
    let seconds = value.div_euclid(per_second);
    let fraction = value.rem_euclid(per_second);
    let micros = match per_second {
        1 => 0,
        1_000 => fraction * 1_000,
        1_000_000 => fraction,
        _ => fraction / 1_000,
    };
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    put_date(out, days);
    out.put_u8(b' ');
    put_two(out, of_day / 3_600);
    out.put_u8(b':');
    put_two(out, of_day / 60 % 60);
    out.put_u8(b':');
    put_two(out, of_day % 60);
    out.put_u8(b'.');
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.put_slice(&digits);
}

/// Writes a year as `strftime`'s `%Y` does: four digits at least, with its
/// sign outside 0–9999.
fn put_year(out: &mut BytesMut, year: i64) {
    if (0..=9999).contains(&year) {
        put_two(out, year / 100);
        put_two(out, year % 100);
    } else {
        if year > 9999 {
            out.put_u8(b'+');
        } else {
            out.put_u8(b'-');
        }
        let mut buffer = itoa::Buffer::new();
        let digits = buffer.format(year.unsigned_abs());
        for _ in digits.len()..4 {
            out.put_u8(b'0');
        }
        out.put_slice(digits.as_bytes());
    }
}

/// Writes `n` (0–99) in two digits.
fn put_two(out: &mut BytesMut, n: i64) {
    out.put_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
        Int64Array, LargeStringArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use pgwire::api::portal::Format;

    use super::*;

    /// The rows the general encoder (`arrow-pg`) writes for `batch`.
    fn general(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> Vec<DataRow> {
        arrow_pg::datatypes::encode_recordbatch(Arc::clone(fields), batch.clone())
            .collect::<Result<_, _>>()
            .expect("arrow-pg encodes")
    }

    #[test]
    fn rows_are_the_bytes_the_general_encoder_writes() {
        let seconds: Vec<i64> = vec![
            0,
            -1,
            946_684_800,
            951_782_400,     // 2000-02-29
            -62_135_596_800, // 0001-01-01
            253_402_300_799, // 9999-12-31 23:59:59
            1_700_000_000,
            -2_208_988_800,  // 1900-01-01
            4_102_444_800,   // 2100-01-01
            -62_167_219_200, // 0000-01-01
            -62_198_755_200, // -0001-01-01
            253_402_300_800, // 10000-01-01
        ];
        let n = seconds.len();
        let nanos: Vec<i64> = seconds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.saturating_mul(1_000_000_000)
                    .saturating_add(i as i64 * 123_456_789 % 1_000_000_000)
            })
            .collect();
        let micros: Vec<i64> = nanos.iter().map(|v| v / 1_000).collect();
        let millis: Vec<i64> = nanos.iter().map(|v| v / 1_000_000 - 7).collect();
        let floats: Vec<Option<f64>> = [
            0.1,
            -2.5e-300,
            1e20,
            f64::NAN,
            f64::INFINITY,
            0.0,
            -0.0,
            123456.789,
            1.0 / 3.0,
            -1e-7,
            42.0,
            f64::NEG_INFINITY,
        ]
        .into_iter()
        .map(Some)
        .collect();
        let text: Vec<Option<&str>> = [
            "Alice",
            "",
            "ünïcode",
            "tab\there",
            "a,b",
            "NULL",
            "\"q\"",
            "x",
            "y",
            "z",
            "w",
            "v",
        ]
        .into_iter()
        .map(Some)
        .collect();
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            (
                "i8",
                Arc::new(Int8Array::from_iter(
                    (0..n).map(|i| Some((i as i8).wrapping_mul(31).wrapping_sub(120))),
                )),
            ),
            (
                "i16",
                Arc::new(Int16Array::from_iter(
                    (0..n).map(|i| Some((i as i16).wrapping_mul(-4000))),
                )),
            ),
            (
                "i32",
                Arc::new(Int32Array::from_iter((0..n).map(|i| {
                    (i != 3).then_some((i as i32).wrapping_mul(987_654_321))
                }))),
            ),
            (
                "i64",
                Arc::new(Int64Array::from_iter(
                    (0..n).map(|i| Some(i64::MIN + i as i64)),
                )),
            ),
            (
                "f32",
                Arc::new(Float32Array::from_iter(
                    floats.iter().map(|f| f.map(|f| f as f32)),
                )),
            ),
            ("f64", Arc::new(Float64Array::from(floats.clone()))),
            (
                "b",
                Arc::new(BooleanArray::from_iter(
                    (0..n).map(|i| (i != 2).then_some(i % 3 == 0)),
                )),
            ),
            ("s", Arc::new(StringArray::from(text.clone()))),
            ("ls", Arc::new(LargeStringArray::from(text.clone()))),
            ("vs", Arc::new(StringViewArray::from(text.clone()))),
            (
                "d",
                Arc::new(Date32Array::from_iter(
                    seconds.iter().map(|s| Some((s / 86_400) as i32)),
                )),
            ),
            ("ts", Arc::new(TimestampSecondArray::from(seconds.clone()))),
            ("tms", Arc::new(TimestampMillisecondArray::from(millis))),
            ("tus", Arc::new(TimestampMicrosecondArray::from(micros))),
            ("tns", Arc::new(TimestampNanosecondArray::from(nanos))),
        ];
        columns.push(("null", Arc::new(Int64Array::from(vec![None::<i64>; n]))));
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|(_, c)| c).collect(),
        )
        .expect("batch");
        let fields =
            Arc::new(super::super::types::fields(&schema, &Format::UnifiedText).expect("fields"));
        let ours = encode(&batch, &fields).expect("every column is written here");
        let theirs = general(&batch, &fields);
        assert_eq!(ours.len(), theirs.len());
        for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a.field_count, b.field_count, "row {row}");
            assert_eq!(
                String::from_utf8_lossy(&a.data),
                String::from_utf8_lossy(&b.data),
                "row {row}"
            );
        }
    }

    #[test]
    fn binary_columns_and_other_types_go_to_the_general_encoder() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .expect("batch");
        let binary = super::super::types::fields(&schema, &Format::UnifiedBinary).expect("fields");
        assert!(encode(&batch, &binary).is_none());
        let decimals = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(10, 2),
            false,
        )]));
        let batch = RecordBatch::try_new(
            Arc::clone(&decimals),
            vec![Arc::new(
                datafusion::arrow::array::Decimal128Array::from(vec![125])
                    .with_precision_and_scale(10, 2)
                    .expect("decimal"),
            )],
        )
        .expect("batch");
        let text = super::super::types::fields(&decimals, &Format::UnifiedText).expect("fields");
        assert!(encode(&batch, &text).is_none());
    }
}
