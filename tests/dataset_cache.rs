//! The encoded-dataset cache: built once, reused when inputs are unchanged, rebuilt when they change,
//! and holding exactly the ids of the streaming encode pass.
mod common;

use ensemble_serve::data::encode::encode_file;
use ensemble_serve::data::Dataset;
use ensemble_serve::data::Split;

#[test]
fn cache_is_reused_invalidated_and_exact() {
    let data = require_data!();
    let tmp = tempfile::tempdir().unwrap();
    // A private copy of the ml100k split, so the test can change a file.
    let copy = tmp.path().join("benchmarks/ml100k_ctr");
    std::fs::create_dir_all(&copy).unwrap();
    for part in ["train", "valid", "test"] {
        std::fs::copy(data.join("benchmarks/ml100k_ctr").join(format!("{part}.csv")), copy.join(format!("{part}.csv")))
            .unwrap();
    }
    let spec = common::spec("ml100k_ctr", tmp.path());
    let cache = tmp.path().join("cache");
    let first = Dataset::open(&spec, &cache, false).unwrap();
    assert!(!first.from_cache);
    assert_eq!(
        (first.train.rows, first.valid.as_ref().unwrap().rows, first.test.as_ref().unwrap().rows),
        (58_284, 7_285, 7_286)
    );
    let mut streamed = Vec::new();
    encode_file(&spec, &first.encoder, Split::Valid, false, |row, _| {
        streamed.extend_from_slice(row);
        Ok(())
    })
    .unwrap();
    assert_eq!(first.valid.as_ref().unwrap().ids(), &streamed[..]);
    let second = Dataset::open(&spec, &cache, false).unwrap();
    assert!(second.from_cache);
    assert_eq!(second.dir, first.dir);
    assert_eq!(second.train.labels(), first.train.labels());
    // Appending one row changes the content hash: a new cache entry with one more training row.
    let mut train = std::fs::read_to_string(copy.join("train.csv")).unwrap();
    train.push_str("1,1,M,24,technician,1,1995,Animation\n");
    std::fs::write(copy.join("train.csv"), train).unwrap();
    let third = Dataset::open(&spec, &cache, false).unwrap();
    assert!(!third.from_cache);
    assert_ne!(third.dir, first.dir);
    assert_eq!(third.train.rows, 58_285);
}
