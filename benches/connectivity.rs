//! Micro-benchmark of the features worker's hot path: functional connectivity (Pearson, upper
//! triangle, Fisher z) of one subject, a subject's values to and from their `bytea` column, and
//! MessagePack encoding of an ingest batch.
//!
//! `cargo bench --bench connectivity`

use broker_schemas::{IngestV1, Sample, SampleKind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn series(timepoints: usize, regions: usize) -> Vec<f32> {
    (0..timepoints * regions)
        .map(|i| ((i * 7919 + 13) % 1009) as f32 / 1009.0)
        .collect()
}

fn connectivity(c: &mut Criterion) {
    let mut group = c.benchmark_group("connectivity");
    for (t, r) in [(200, 116), (150, 16), (1200, 400)] {
        let values = series(t, r);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{t}x{r}")),
            &values,
            |b, v| b.iter(|| swarm_features::connectivity::fisher_z(v, t)),
        );
    }
    group.finish();
}

fn floats(c: &mut Criterion) {
    use swarm_runtime::floats::{FloatVec, Floats};
    use tokio_postgres::types::{FromSql, ToSql, Type};
    let values = series(200, 116);
    let mut column = bytes::BytesMut::new();
    Floats(&values)
        .to_sql(&Type::BYTEA, &mut column)
        .expect("encodes");
    let mut group = c.benchmark_group("bytea 200×116");
    group.throughput(Throughput::Elements(1));
    group.bench_function("to_sql", |b| {
        b.iter(|| {
            let mut out = bytes::BytesMut::new();
            Floats(&values)
                .to_sql(&Type::BYTEA, &mut out)
                .expect("encodes");
            out
        })
    });
    group.bench_function("from_sql", |b| {
        b.iter(|| FloatVec::from_sql(&Type::BYTEA, &column).expect("decodes"))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let batch = IngestV1 {
        project: "bench".into(),
        site: "site".into(),
        samples: (0..100)
            .map(|i| Sample::vector(format!("sub-{i:04}"), "patient", series(64, 1)))
            .collect(),
    };
    let body = broker_schemas::encode(&batch);
    let mut group = c.benchmark_group("ingest.v1 100×64");
    group.throughput(Throughput::Elements(100));
    group.bench_function("encode", |b| b.iter(|| broker_schemas::encode(&batch)));
    group.bench_function("decode", |b| {
        b.iter(|| broker_schemas::decode::<IngestV1>(&body).expect("decodes"))
    });
    group.finish();
    // What every worker does to an ingest.v1 body before decoding it: the limits' header scan.
    let batch = IngestV1 {
        project: "bench".into(),
        site: "site".into(),
        samples: (0..10)
            .map(|i| Sample {
                kind: SampleKind::Timeseries,
                timepoints: Some(200),
                ..Sample::vector(format!("sub-{i:04}"), "patient", series(200, 116))
            })
            .collect(),
    };
    let body = broker_schemas::encode(&batch);
    let limits = swarm_runtime::limits::Limits::default();
    let mut group = c.benchmark_group("ingest.v1 10×200×116");
    group.throughput(Throughput::Elements(10));
    group.bench_function("check_body", |b| {
        b.iter(|| {
            limits
                .check_body("ingest.v1", &body)
                .expect("within limits")
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| broker_schemas::decode::<IngestV1>(&body).expect("decodes"))
    });
    group.bench_function("validate", |b| {
        b.iter(|| swarm_ingest::validate::batch(&batch).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, connectivity, floats, encode);
criterion_main!(benches);
