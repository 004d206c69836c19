//! The window operator on its own: source batches of readings pushed through a planned query's
//! pipeline (scan, window aggregate, HAVING filter, projection), with a watermark after every
//! batch as a source sends it. No decoding, no channels, no sinks: what one query task costs.
//!
//!     cargo bench -p eddy-benches --bench window_operator

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eddy_benches::{Workload, batches, query_file, readings};
use eddy_engine::message::Message;
use eddy_engine::ops::Pipeline;

const EVENTS: usize = 1_000_000;
const BATCH: usize = 8_192;
const BOUND_MS: i64 = 5_000;

fn pipeline(runtime: &tokio::runtime::Runtime, workload: &Workload) -> Pipeline {
    let registry = eddy_connectors::registry();
    let sql = query_file(workload, "readings.jsonl", "alerts.jsonl");
    let mut plan = runtime
        .block_on(eddy_engine::plan_script("bench.sql", &sql, &registry))
        .unwrap_or_else(|d| panic!("the benchmark query does not plan:\n{d}"));
    plan.queries.remove(0).pipeline
}

fn window_operator(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("window_operator");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    for devices in [1_000, 100_000] {
        let input = batches(&readings(EVENTS, devices), BATCH);
        let watermarks: Vec<i64> = input
            .iter()
            .scan(i64::MIN, |newest, b| {
                let ts = b.column(2).as_any();
                let ts = ts
                    .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                    .expect("ts is a millisecond timestamp");
                *newest = ts.values().iter().copied().fold(*newest, i64::max);
                Some(*newest - BOUND_MS)
            })
            .collect();
        for workload in eddy_benches::WORKLOADS {
            let id = format!("{} / {devices} devices", workload.name);
            group.bench_function(id, |b| {
                b.iter_batched(
                    || pipeline(&runtime, &workload),
                    |mut pipeline| {
                        let mut out = Vec::new();
                        for (batch, watermark) in input.iter().zip(&watermarks) {
                            pipeline
                                .push(0, Message::Batch(batch.clone()), &mut out)
                                .expect("the pipeline runs");
                            pipeline
                                .push(0, Message::Watermark(*watermark), &mut out)
                                .expect("the pipeline runs");
                            out.clear();
                        }
                        pipeline
                            .push(0, Message::End, &mut out)
                            .expect("the pipeline runs");
                        out
                    },
                    BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, window_operator);
criterion_main!(benches);
