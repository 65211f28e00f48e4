//! The original releases → benchmark tables: MovieLens-100K reproduces the shipped split's rows exactly
//! (as a multiset); Frappe reproduces its positives and draws valid negatives, deterministically.
mod common;

use std::collections::{HashMap, HashSet};

use ensemble_serve::data::raw;

fn multiset(rows: impl IntoIterator<Item = Vec<String>>) -> HashMap<Vec<String>, usize> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r).or_insert(0) += 1;
    }
    m
}

fn benchmark_rows(data: &std::path::Path, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut all = Vec::new();
    let mut header = Vec::new();
    for part in ["train", "valid", "test"] {
        let (h, rows) = common::read_plain_csv(&data.join("benchmarks").join(name).join(format!("{part}.csv")));
        header = h;
        all.extend(rows);
    }
    (header, all)
}

#[test]
fn movielens_raw_recipe_reproduces_the_benchmark() {
    let data = require_data!();
    let table = raw::movielens_100k(&data.join("movielens-100k"), 2024).unwrap();
    assert_eq!(table.rows.len(), 72_855);
    let (header, bench) = benchmark_rows(&data, "ml100k_ctr");
    assert_eq!(table.header, header);
    assert!(multiset(table.rows.clone()) == multiset(bench), "same rows as the shipped ml100k_ctr split");
    let dir = tempfile::tempdir().unwrap();
    let sizes = raw::write_splits(&table, [0.8, 0.1, 0.1], &dir.path().join("ml")).unwrap();
    assert_eq!(sizes, [58_284, 7_285, 7_286]);
}

#[test]
fn frappe_raw_recipe_builds_positives_and_valid_negatives() {
    let data = require_data!();
    let src = data.join("frappe/original");
    let table = raw::frappe(&src, 2024).unwrap();
    assert_eq!(table.rows.len(), 288_609);
    assert_eq!(raw::split_sizes(table.rows.len(), [0.7, 0.2, 0.1]), [202_026, 57_721, 28_862]);
    let (header, bench) = benchmark_rows(&data, "frappe_ctr");
    assert_eq!(table.header, header);
    let positives = |rows: &[Vec<String>]| multiset(rows.iter().filter(|r| r[0] == "1").cloned());
    assert!(positives(&table.rows) == positives(&bench), "positives are the log rows, as in the shipped split");
    // A negative keeps user and context and uses an app that user never used in that context.
    let ctx = |r: &Vec<String>| [&r[1..2], &r[3..]].concat();
    let used: HashSet<(Vec<String>, String)> =
        table.rows.iter().filter(|r| r[0] == "1").map(|r| (ctx(r), r[2].clone())).collect();
    let negatives: Vec<_> = table.rows.iter().filter(|r| r[0] == "0").collect();
    assert_eq!(negatives.len(), 2 * 96_203);
    assert!(negatives.iter().all(|r| !used.contains(&(ctx(r), r[2].clone()))));
    let again = raw::frappe(&src, 2024).unwrap();
    assert!(again.rows == table.rows, "seeded: the same seed gives the same table");
}
