//! Broken input of every kind is reported with file, line number and reason; `skip` counts and keeps going,
//! `fail` stops at the first; compressed files read the same as plain ones.
use std::io::Write;
use std::path::{Path, PathBuf};

use ensemble_serve::data::encode::{encode_file, fit_encoder};
use ensemble_serve::data::DataError;
use ensemble_serve::data::Split;
use ensemble_serve::features::{DatasetSpec, ErrorPolicy};

fn spec(format: &str, train: &Path, fields: &str) -> DatasetSpec {
    let text = format!("name = \"fixture\"\nformat = \"{format}\"\n[files]\ntrain = \"{}\"\n{fields}", train.display());
    let dir = train.parent().unwrap();
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    DatasetSpec::load(&path, dir).unwrap()
}

const CSV_FIELDS: &str = "[[fields]]\nname = \"user\"\nkind = \"categorical\"\n[[fields]]\nname = \"price\"\nkind = \"numeric_bucket\"\n[[fields]]\nname = \"tags\"\nkind = \"sequence\"\nseparator = \"^\"\nmax_len = 2\n";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn every_kind_of_broken_csv_line_is_reported_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"label,user,price,tags\n\
1,u1,10,a^b\n\
0,u2,3.5\n\
yes,u3,1,a\n\
1,u4,ten,a\n\
0,u5,1,a,extra\n\
1,\xff\xfe,2,a\n\
0,u6,,\n\
1,\"u,7\",100,b^c^d\n";
    let train = write(dir.path(), "train.csv", body);
    let s = spec("csv", &train, CSV_FIELDS);
    let (enc, stats) = fit_encoder(&s, false).unwrap();
    assert_eq!(stats.rows, 3, "lines 2, 8 and 9 are well formed");
    assert_eq!(stats.rejects.count, 5);
    let p = train.display().to_string();
    let want = [
        format!("{p}:3: expected 4 columns, found 3"),
        format!("{p}:4: label 'yes' is not 0/1 (or 1/-1)"),
        format!("{p}:5: field 'price': 'ten' is not a number"),
        format!("{p}:6: expected 4 columns, found 5"),
        format!("{p}:7: not valid UTF-8"),
    ];
    assert_eq!(stats.rejects.first, want);
    // The quoted comma is one value; a blank numeric is its own value; tags truncate to max_len.
    assert!(enc.fields[0].vocab.tokens().iter().any(|t| &**t == "u,7"));
    assert!(enc.fields[1].vocab.tokens().iter().any(|t| t.is_empty()));

    let mut strict = s.clone();
    strict.on_error = ErrorPolicy::Fail;
    match fit_encoder(&strict, false) {
        Err(DataError::Malformed { path, line, reason }) => {
            assert_eq!((path, line, reason.as_str()), (train.clone(), 3, "expected 4 columns, found 3"));
        }
        other => panic!("expected a malformed-line error, got {:?}", other.map(|(_, s)| s.rows)),
    }
    let err = fit_encoder(&strict, false).map(|_| ()).unwrap_err().to_string();
    assert_eq!(err, format!("{p}:3: expected 4 columns, found 3"));
}

/// frappe's files end lines with CRLF, which the csv reader stamps a line early unless corrected; quoted
/// newlines and a switch to LF mid-file must not shift the count either.
#[test]
fn crlf_and_quoted_newlines_keep_line_numbers_exact() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"label,user,price,tags\r\n\
1,u1,10,a^b\r\n\
0,u2,3.5\r\n\
1,\"u\r\n3\",1,a\r\n\
yes,u4,1,a\r\n\
1,u5,2,a\n\
0,u6\r\n";
    let train = write(dir.path(), "crlf.csv", body);
    let (enc, stats) = fit_encoder(&spec("csv", &train, CSV_FIELDS), false).unwrap();
    assert_eq!(stats.rows, 3, "lines 2, 4-5 and 7 are well formed");
    let p = train.display().to_string();
    let want = [
        format!("{p}:3: expected 4 columns, found 3"),
        format!("{p}:6: label 'yes' is not 0/1 (or 1/-1)"),
        format!("{p}:8: expected 4 columns, found 2"),
    ];
    assert_eq!(stats.rejects.first, want);
    assert!(enc.fields[0].vocab.tokens().iter().any(|t| &**t == "u\r\n3"), "the quoted newline stays in the value");
}

#[test]
fn missing_columns_and_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", b"label,user,cost\n1,a,2\n");
    let err = fit_encoder(&spec("csv", &train, CSV_FIELDS), false).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("header has no column 'price'"), "{err}");
    let gone = dir.path().join("absent.csv");
    let err = fit_encoder(&spec("csv", &gone, CSV_FIELDS), false).map(|_| ()).unwrap_err().to_string();
    assert!(err.starts_with(&gone.display().to_string()), "{err}");
}

#[test]
fn libsvm_lines_with_ranges_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"1 3:1 10:1\n-1 4:1 11:1\n1 3:1\n0 3:1 99:1\n1 3:x 10:1\n2 3:1 10:1\n1 3:1 4:1\n";
    let train = write(dir.path(), "train.libsvm", body);
    let fields = "[[fields]]\nname = \"a\"\nkind = \"categorical\"\nindices = [0, 9]\n[[fields]]\nname = \"b\"\nkind = \"categorical\"\nindices = [10, 19]\n";
    let (enc, stats) = fit_encoder(&spec("libsvm", &train, fields), false).unwrap();
    assert_eq!(stats.rows, 3);
    assert!((stats.label_mean() - 2.0 / 3.0).abs() < 1e-9, "-1 is a negative label");
    let reasons: Vec<_> = stats.rejects.first.iter().map(|e| e.split_once(": ").unwrap().1.to_string()).collect();
    assert_eq!(
        reasons,
        [
            "feature index 99 is in no field's range",
            "feature value 'x' is not a number",
            "label '2' is not 0/1 (or 1/-1)",
            "two features for field #1",
        ]
    );
    assert_eq!(stats.rejects.first[0].rsplit_once(':').unwrap().0.rsplit_once(':').unwrap().1, "4");
    assert_eq!(enc.fields[0].vocab.size(), 4, "indices 3 and 4 + padding + OOV");
}

#[test]
fn criteo_rows_gz_and_xz_read_like_plain() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for i in 0..50 {
        let ints: Vec<String> =
            (0..13).map(|j| if (i + j) % 7 == 0 { String::new() } else { ((i * j) % 40).to_string() }).collect();
        let cats: Vec<String> = (0..26)
            .map(|j| if (i + j) % 5 == 0 { String::new() } else { format!("{:08x}", (i % 9) * 31 + j) })
            .collect();
        body.push_str(&format!("{}\t{}\t{}\n", i % 2, ints.join("\t"), cats.join("\t")));
    }
    body.push_str("1\t1\t2\n");
    let fields: String = (1..=13)
        .map(|i| format!("[[fields]]\nname = \"I{i}\"\nkind = \"numeric_bucket\"\n"))
        .chain((1..=26).map(|i| format!("[[fields]]\nname = \"C{i}\"\nkind = \"categorical\"\n")))
        .collect();
    let plain = write(dir.path(), "day.tsv", body.as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = write(dir.path(), "day.tsv.gz", &gz.finish().unwrap());
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(body.as_bytes()).unwrap();
    let xz = write(dir.path(), "day.tsv.xz", &xz.finish().unwrap());
    let mut results = Vec::new();
    for path in [plain, gz, xz] {
        let s = spec("criteo", &path, &fields);
        let (enc, stats) = fit_encoder(&s, false).unwrap();
        assert_eq!((stats.rows, stats.rejects.count), (50, 1));
        assert!(
            stats.rejects.first[0].ends_with(":51: expected 40 tab-separated columns, found 3"),
            "{:?}",
            stats.rejects.first
        );
        let mut ids = Vec::new();
        encode_file(&s, &enc, Split::Train, false, |row, l| {
            ids.extend_from_slice(row);
            ids.push(l as u32);
            Ok(())
        })
        .unwrap();
        results.push(ids);
    }
    assert!(results[0] == results[1] && results[1] == results[2]);
}
