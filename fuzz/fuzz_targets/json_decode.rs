//! Any bytes as JSON-lines records of a schema: every record is accepted or rejected with a
//! reason, never a panic.
#![no_main]

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use eddy_connectors::format::json::JsonDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let schema = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
        Field::new("count", DataType::Int64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]));
    let records: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let Ok(decoder) = JsonDecoder::new(schema, records.len().max(1)) else {
        return;
    };
    let mut decoder = decoder.with_max_record_bytes(4096);
    let Ok(decoded) = decoder.decode(&records) else {
        return;
    };
    assert_eq!(
        decoded.accepted.len() + decoded.rejected.len(),
        records.len(),
        "every record is accepted or rejected"
    );
    assert_eq!(
        decoded.batch.as_ref().map_or(0, |b| b.num_rows()),
        decoded.accepted.len()
    );
});
