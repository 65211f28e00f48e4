//! Streaming row readers: one row at a time, cells in the spec's field order, malformed lines reported
//! with file, line number and reason under the spec's error policy.
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::{open_any, DataError};
use crate::features::{DatasetSpec, ErrorPolicy, Format};

/// How many malformed lines are kept verbatim for the report.
pub const REPORTED_ERRORS: usize = 10;

/// One parsed row: its 1-based line number, its label and one raw cell per field.
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    pub line: u64,
    pub label: f32,
    text: &'a str,
    spans: &'a [(usize, usize)],
}

/// Why one line is malformed; the reader adds the file and the line number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("unreadable record: {0}")]
    Unreadable(String),
    #[error("read error: {0}")]
    Read(String),
    #[error("expected {expected} columns, found {found}")]
    Columns { expected: usize, found: usize },
    #[error("expected 40 tab-separated columns, found {0}")]
    CriteoColumns(usize),
    #[error("not valid UTF-8")]
    Utf8,
    #[error("label '{0}' is not 0/1 (or 1/-1)")]
    Label(String),
    #[error("empty line")]
    Empty,
    #[error("'{0}' is not idx:val")]
    NotIndexValue(String),
    #[error("feature index '{0}' is not an integer")]
    Index(String),
    #[error("feature value '{0}' is not a number")]
    Value(String),
    #[error("feature index {0} is in no field's range")]
    NoField(u64),
    #[error("more than {0} features on the line")]
    TooMany(usize),
    #[error("two features for field #{0}")]
    Twice(usize),
    #[error("field '{field}': {reason}")]
    Field { field: String, reason: crate::features::BadValue },
}

impl<'a> RawRow<'a> {
    #[inline]
    pub fn cell(&self, i: usize) -> &'a str {
        let (a, b) = self.spans[i];
        &self.text[a..b]
    }
    pub fn cells(&self) -> impl Iterator<Item = &'a str> + Clone + 'a {
        let text = self.text;
        self.spans.iter().map(move |&(a, b)| &text[a..b])
    }
}

/// Malformed lines seen so far.
#[derive(Debug, Clone, Default)]
pub struct Rejects {
    pub count: u64,
    pub first: Vec<String>,
}

enum Source {
    Delimited {
        records: csv::Reader<Box<dyn Read + Send>>,
        record: csv::ByteRecord,
        columns: usize,
        label_col: usize,
        cols: Vec<usize>,
        /// The last record ended at a `\r` whose `\n` the csv reader has not consumed (nor counted) yet.
        cr_pending: bool,
    },
    Lines {
        lines: BufReader<Box<dyn Read + Send>>,
        raw: String,
    },
}

pub struct RowReader {
    path: PathBuf,
    format: Format,
    policy: ErrorPolicy,
    source: Source,
    /// libsvm: the inclusive index range per field (positional when none is declared).
    ranges: Vec<Option<[u64; 2]>>,
    fields: usize,
    text: String,
    spans: Vec<(usize, usize)>,
    label: f32,
    line: u64,
    pub rejects: Rejects,
}

impl RowReader {
    /// Opens `path` as the spec describes; a delimited file's header must name the label and every field.
    pub fn open(spec: &DatasetSpec, path: &Path, read_bytes: Arc<AtomicU64>) -> Result<Self, DataError> {
        let input = open_any(path, read_bytes)?;
        let source = match spec.format {
            Format::Csv | Format::Tsv => delimited(spec, path, input)?,
            Format::Libsvm | Format::Criteo => {
                Source::Lines { lines: BufReader::with_capacity(1 << 20, input), raw: String::new() }
            }
        };
        let line = if matches!(source, Source::Delimited { .. }) { 1 } else { 0 };
        Ok(Self {
            path: path.to_path_buf(),
            format: spec.format,
            policy: spec.on_error,
            source,
            ranges: spec.fields.iter().map(|f| f.indices).collect(),
            fields: spec.fields.len(),
            text: String::new(),
            spans: Vec::with_capacity(spec.fields.len()),
            label: 0.0,
            line,
            rejects: Rejects::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next well-formed row, `None` at the end of the file.
    pub fn next_row(&mut self) -> Result<Option<RawRow<'_>>, DataError> {
        loop {
            match self.parse_next() {
                Ok(true) => break,
                Ok(false) => return Ok(None),
                Err(reason) => self.reject(self.line, reason)?,
            }
        }
        let label = self.label;
        Ok(Some(RawRow { line: self.line, label, text: &self.text, spans: &self.spans }))
    }

    /// Applies the error policy to a malformed line (also for errors found after reading, e.g. a bad number).
    pub fn reject(&mut self, line: u64, reason: LineError) -> Result<(), DataError> {
        if self.policy == ErrorPolicy::Fail {
            return Err(DataError::Malformed { path: self.path.clone(), line, reason: reason.to_string() });
        }
        self.rejects.count += 1;
        if self.rejects.first.len() < REPORTED_ERRORS {
            self.rejects.first.push(format!("{}:{line}: {reason}", self.path.display()));
        }
        Ok(())
    }

    /// Reads one line into `text`/`spans`; `Ok(false)` at the end, `Err(reason)` for a malformed line.
    fn parse_next(&mut self) -> Result<bool, LineError> {
        self.text.clear();
        self.spans.clear();
        match &mut self.source {
            Source::Delimited { records, record, columns, label_col, cols, cr_pending } => {
                match records.read_byte_record(record) {
                    Ok(false) => return Ok(false),
                    Ok(true) => {}
                    Err(e) => {
                        self.line += 1;
                        return Err(LineError::Unreadable(e.to_string()));
                    }
                }
                let counted = record.position().map_or(self.line + 1, |p| p.line());
                self.line = counted + u64::from(*cr_pending);
                *cr_pending = ends_at_cr(counted, *cr_pending, record, records.position());
                if record.len() != *columns {
                    return Err(LineError::Columns { expected: *columns, found: record.len() });
                }
                let text = std::str::from_utf8(record.as_slice()).map_err(|_| LineError::Utf8)?;
                self.text.push_str(text);
                let label_range = record.range(*label_col).expect("checked width");
                self.label = parse_label(&text[label_range])?;
                for &c in cols.iter() {
                    let r = record.range(c).expect("checked width");
                    self.spans.push((r.start, r.end));
                }
                Ok(true)
            }
            Source::Lines { lines, raw } => {
                raw.clear();
                let n = lines.read_line(raw).map_err(|e| LineError::Read(e.to_string()))?;
                if n == 0 {
                    return Ok(false);
                }
                self.line += 1;
                let line = raw.trim_end_matches(['\n', '\r']);
                match self.format {
                    Format::Criteo => parse_criteo(line, &mut self.text, &mut self.spans, &mut self.label),
                    _ => parse_libsvm(line, &self.ranges, &mut self.text, &mut self.spans, &mut self.label),
                }?;
                debug_assert_eq!(self.spans.len(), self.fields);
                Ok(true)
            }
        }
    }
}

fn delimited(spec: &DatasetSpec, path: &Path, input: Box<dyn Read + Send>) -> Result<Source, DataError> {
    let tsv = spec.format == Format::Tsv;
    let mut records = csv::ReaderBuilder::new()
        .delimiter(if tsv { b'\t' } else { b',' })
        .quoting(!tsv)
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(1 << 20)
        .from_reader(input);
    let header = records.byte_headers().map_err(|e| DataError::Header { path: path.into(), reason: e.to_string() })?;
    let names: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect();
    let find = |name: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| DataError::Header {
            path: path.into(),
            reason: format!("header has no column '{name}' (columns: {})", names.join(", ")),
        })
    };
    let label_col = find(&spec.label)?;
    let cols = spec.fields.iter().map(|f| find(&f.name)).collect::<Result<Vec<_>, _>>()?;
    let cr_pending = ends_at_cr(1, false, &header.clone(), records.position());
    Ok(Source::Delimited { records, record: csv::ByteRecord::new(), columns: names.len(), label_col, cols, cr_pending })
}

/// The csv reader counts a line at its `\n` but stamps a record's position before reading it, so after a
/// CRLF record the next one is stamped a line early (the pending `\n`): frappe's files are CRLF. Whether
/// `record` (stamped at line `counted`) ended at such a `\r` follows from the lines the reader counted
/// while reading it: the pending `\n`, the newlines inside quoted cells, and its own `\n` if it had one.
fn ends_at_cr(counted: u64, cr_was_pending: bool, record: &csv::ByteRecord, after: &csv::Position) -> bool {
    let inside = memchr::memchr_iter(b'\n', record.as_slice()).count() as u64;
    after.line() == counted + u64::from(cr_was_pending) + inside
}

/// Labels 1 / 0 / -1 (also as floats); anything else is malformed.
pub fn parse_label(raw: &str) -> Result<f32, LineError> {
    match raw.trim() {
        "1" | "1.0" | "+1" => Ok(1.0),
        "0" | "0.0" | "-1" | "-1.0" => Ok(0.0),
        other => Err(LineError::Label(other.into())),
    }
}

/// `label \t I1..I13 \t C1..C26`: exactly 40 tab-separated columns, blanks allowed.
fn parse_criteo(
    line: &str,
    text: &mut String,
    spans: &mut Vec<(usize, usize)>,
    label: &mut f32,
) -> Result<(), LineError> {
    text.push_str(line);
    let mut start = 0;
    for tab in memchr::memchr_iter(b'\t', line.as_bytes()).chain([line.len()]) {
        spans.push((start, tab));
        start = tab + 1;
    }
    let (a, b) = spans.remove(0);
    *label = parse_label(&line[a..b])?;
    if spans.len() != 39 {
        return Err(LineError::CriteoColumns(spans.len() + 1));
    }
    Ok(())
}

/// `label idx:val …`: each field's cell is the index that falls in its range (positional without ranges).
fn parse_libsvm(
    line: &str,
    ranges: &[Option<[u64; 2]>],
    text: &mut String,
    spans: &mut Vec<(usize, usize)>,
    label: &mut f32,
) -> Result<(), LineError> {
    let mut tokens = line.split_ascii_whitespace();
    *label = parse_label(tokens.next().ok_or(LineError::Empty)?)?;
    spans.resize(ranges.len(), (0, 0));
    let mut seen = vec![false; ranges.len()];
    for (pos, tok) in tokens.enumerate() {
        let (idx, val) = tok.split_once(':').ok_or_else(|| LineError::NotIndexValue(tok.into()))?;
        let index: u64 = idx.parse().map_err(|_| LineError::Index(idx.into()))?;
        val.parse::<f64>().map_err(|_| LineError::Value(val.into()))?;
        let field = if ranges.iter().all(Option::is_none) {
            pos
        } else {
            ranges
                .iter()
                .position(|r| r.is_some_and(|[lo, hi]| (lo..=hi).contains(&index)))
                .ok_or(LineError::NoField(index))?
        };
        if field >= ranges.len() {
            return Err(LineError::TooMany(ranges.len()));
        }
        if std::mem::replace(&mut seen[field], true) {
            return Err(LineError::Twice(field + 1));
        }
        let start = text.len();
        text.push_str(idx);
        spans[field] = (start, text.len());
    }
    Ok(())
}
