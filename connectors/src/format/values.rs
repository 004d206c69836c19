//! Text into typed values: what CSV fields, raw payloads and topic levels hold. Each value that
//! does not read as its column's type is an error for its row, naming the column and the text.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, TimestampMillisecondArray};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, TimeUnit};

/// The values of `texts` (None or blank: NULL) as `data_type`, and each row's error.
pub fn parse_texts(
    texts: &[Option<&str>],
    data_type: &DataType,
    column: &str,
) -> (ArrayRef, Vec<Option<String>>) {
    let trimmed: Vec<Option<&str>> = texts
        .iter()
        .map(|t| t.map(str::trim).filter(|t| !t.is_empty()))
        .collect();
    let mut errors = vec![None; texts.len()];
    if let DataType::Timestamp(TimeUnit::Millisecond, tz) = data_type {
        let values: Vec<Option<i64>> = trimmed
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = (*t)?;
                let ms = t
                    .parse::<i64>()
                    .ok()
                    .or_else(|| string_to_timestamp_nanos(t).ok().map(|ns| ns / 1_000_000));
                if ms.is_none() {
                    errors[i] = Some(format!(
                        "{column}: '{t}' is not a time (RFC 3339 or epoch milliseconds)"
                    ));
                }
                ms
            })
            .collect();
        let array = TimestampMillisecondArray::from(values).with_timezone_opt(tz.clone());
        return (Arc::new(array), errors);
    }
    let strings: ArrayRef = Arc::new(StringArray::from(trimmed.clone()));
    if data_type == &DataType::Utf8 {
        return (strings, errors);
    }
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    match cast_with_options(&strings, data_type, &options) {
        Ok(array) => {
            for (i, t) in trimmed.iter().enumerate() {
                if let Some(t) = t
                    && array.is_null(i)
                {
                    errors[i] = Some(format!("{column}: '{t}' is not a {data_type}"));
                }
            }
            (array, errors)
        }
        Err(e) => {
            let reason = format!("{column}: cannot read text as {data_type}: {e}");
            for (i, t) in trimmed.iter().enumerate() {
                if t.is_some() {
                    errors[i] = Some(reason.clone());
                }
            }
            (arrow::array::new_null_array(data_type, texts.len()), errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, TimestampMillisecondType};

    #[test]
    fn numbers_times_and_blanks_read_and_bad_values_are_named() {
        let (a, e) = parse_texts(
            &[Some("81.5"), Some(" 3 "), Some(""), None, Some("hot")],
            &DataType::Float64,
            "temp",
        );
        let a = a.as_primitive::<Float64Type>();
        assert_eq!(a.value(0), 81.5);
        assert_eq!(a.value(1), 3.0);
        assert!(a.is_null(2) && a.is_null(3) && a.is_null(4));
        assert_eq!(e[..4], [None, None, None, None]);
        assert_eq!(e[4].as_deref(), Some("temp: 'hot' is not a Float64"));

        let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
        let (a, e) = parse_texts(
            &[
                Some("1767225600123"),
                Some("2026-01-01T00:00:00.123Z"),
                Some("2026-01-01T02:00:00.123+02:00"),
                Some("yesterday"),
            ],
            &ms,
            "ts",
        );
        let a = a.as_primitive::<TimestampMillisecondType>();
        assert_eq!(a.value(0), 1_767_225_600_123);
        assert_eq!(a.value(1), 1_767_225_600_123);
        assert_eq!(a.value(2), 1_767_225_600_123);
        assert!(
            e[3].as_deref()
                .is_some_and(|m| m.contains("'yesterday' is not a time"))
        );
    }
}
