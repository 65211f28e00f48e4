//! Parse + encode throughput (the encode pass: read, split, look up, emit ids), one core:
//! Frappe's real training split, and 1M SYNTHETIC Criteo-shaped rows from `serve data synth`.
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ensemble_serve::data::encode::{encode_file, fit_encoder};
use ensemble_serve::data::Split;
use ensemble_serve::features::DatasetSpec;

fn spec(name: &str, data: &Path) -> DatasetSpec {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/datasets").join(format!("{name}.toml"));
    DatasetSpec::load(&path, data).expect("dataset spec")
}

fn bench_encode(c: &mut Criterion, label: &str, spec: &DatasetSpec) {
    let (encoder, fit) = fit_encoder(spec, false).expect("vocabulary pass");
    let mut group = c.benchmark_group("encode_pass");
    group.sample_size(10).throughput(Throughput::Elements(fit.rows));
    group.bench_function(label, |b| {
        b.iter(|| {
            let mut sum = 0u64;
            encode_file(spec, &encoder, Split::Train, false, |ids, _| {
                sum = sum.wrapping_add(ids[0] as u64);
                Ok(())
            })
            .expect("encode pass");
            sum
        })
    });
    group.finish();
}

fn frappe(c: &mut Criterion) {
    let data = std::env::var_os("CTR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(ensemble_serve::paths::DEFAULT_DATA_DIR));
    if !data.join("benchmarks/frappe_ctr/train.csv").is_file() {
        eprintln!("*** SKIPPED frappe bench: no real data at {} ***", data.display());
        return;
    }
    bench_encode(c, "frappe_ctr_train_202k_rows", &spec("frappe_ctr", &data));
}

fn synthetic_criteo(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = ensemble_serve::data::synth::SynthConfig { rows: 1_000_000, seed: 7, scale: 1.0 };
    ensemble_serve::data::synth::generate(&cfg, &dir.path().join("criteo_synth.tsv")).expect("synthetic rows");
    let mut spec = spec("criteo_synth", dir.path());
    spec.files.split = None; // all 1M rows in the measured pass
    bench_encode(c, "synthetic_criteo_1M_rows", &spec);
}

criterion_group!(benches, frappe, synthetic_criteo);
criterion_main!(benches);
