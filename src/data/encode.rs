//! The two streaming passes: count values on the training split (→ encoder), then encode any split.
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::reader::{LineError, Rejects, RowReader};
use super::{byte_progress, DataError, Split};
use crate::features::{DatasetSpec, Encoder, VocabCounter};

impl Split {
    /// The file holding this part and, for a one-file spec, the rows of that file that belong to it.
    pub fn source(self, spec: &DatasetSpec) -> Option<(&Path, Option<RowFilter>)> {
        let files = &spec.files;
        if let Some(split) = &files.split {
            let r = split.ratios;
            let (lo, hi) = match self {
                Split::Train => (0.0, r[0]),
                Split::Valid => (r[0], r[0] + r[1]),
                Split::Test => (r[0] + r[1], 1.0 + f64::EPSILON),
            };
            return Some((&files.train, Some(RowFilter { seed: split.seed, lo, hi })));
        }
        match self {
            Split::Train => Some((&files.train, None)),
            Split::Valid => files.valid.as_deref().map(|p| (p, None)),
            Split::Test => files.test.as_deref().map(|p| (p, None)),
        }
    }
}

/// Keeps the rows whose seeded hash of the line number falls in `[lo, hi)`: a streaming split whose part
/// sizes match the ratios in expectation, with no per-row memory.
#[derive(Debug, Clone, Copy)]
pub struct RowFilter {
    pub seed: u64,
    pub lo: f64,
    pub hi: f64,
}

impl RowFilter {
    #[inline]
    pub fn keeps(&self, line: u64) -> bool {
        let u = (splitmix64(line ^ self.seed.rotate_left(32)) >> 11) as f64 / (1u64 << 53) as f64;
        u >= self.lo && u < self.hi
    }
}

#[inline]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What one pass saw.
#[derive(Debug, Clone, Default)]
pub struct SplitStats {
    pub rows: u64,
    pub rejects: Rejects,
    pub label_sum: f64,
    /// Per field: (OOV ids, ids looked up); padding excluded.
    pub oov: Vec<(u64, u64)>,
    pub seconds: f64,
    pub bytes: u64,
}

impl SplitStats {
    pub fn label_mean(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.label_sum / self.rows as f64
        }
    }
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// Streams `part` through `visit(row cells…)`, applying the error policy to rows `visit` rejects.
fn stream(
    spec: &DatasetSpec,
    part: Split,
    progress: bool,
    mut visit: impl FnMut(&super::RawRow<'_>) -> Result<(), (usize, crate::features::BadValue)>,
) -> Result<SplitStats, DataError> {
    let Some((path, filter)) = part.source(spec) else {
        return Ok(SplitStats::default());
    };
    let read = Arc::new(AtomicU64::new(0));
    let mut reader = RowReader::open(spec, path, read.clone())?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = progress.then(|| byte_progress(part.name(), size));
    let start = Instant::now();
    let mut stats = SplitStats::default();
    while let Some(row) = reader.next_row()? {
        if filter.is_some_and(|f| !f.keeps(row.line)) {
            continue;
        }
        let (line, label) = (row.line, row.label);
        match visit(&row) {
            Ok(()) => {
                stats.rows += 1;
                stats.label_sum += label as f64;
            }
            Err((field, reason)) => {
                reader.reject(line, LineError::Field { field: spec.fields[field].name.clone(), reason })?
            }
        }
        if stats.rows % 65_536 == 0 {
            if let Some(b) = &bar {
                b.set_position(read.load(Ordering::Relaxed));
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats.bytes = read.load(Ordering::Relaxed);
    stats.rejects = reader.rejects.clone();
    Ok(stats)
}

/// Pass 1: counts values on the training part and fits the encoder.
pub fn fit_encoder(spec: &DatasetSpec, progress: bool) -> Result<(Encoder, SplitStats), DataError> {
    let mut counter = VocabCounter::new(spec);
    let stats = stream(spec, Split::Train, progress, |row| counter.add_row(row.cells()))?;
    Ok((counter.into_encoder(spec), stats))
}

/// Pass 2: encodes `part`, handing each row's ids (length `encoder.width()`) and label to `sink`.
pub fn encode_file(
    spec: &DatasetSpec,
    encoder: &Encoder,
    part: Split,
    progress: bool,
    mut sink: impl FnMut(&[u32], f32) -> Result<(), DataError>,
) -> Result<SplitStats, DataError> {
    let mut ids = vec![0u32; encoder.width()];
    let mut oov = vec![(0u64, 0u64); encoder.fields.len()];
    let mut sink_error = None;
    let mut stats = stream(spec, part, progress, |row| {
        for (i, f) in encoder.fields.iter().enumerate() {
            f.encode_text(row.cell(i), &mut ids[encoder.slots(i)]).map_err(|e| (i, e))?;
        }
        for (i, f) in encoder.fields.iter().enumerate() {
            let (o, n) = &mut oov[i];
            for &id in ids[encoder.slots(i)].iter().filter(|&&id| id != 0) {
                *n += 1;
                *o += u64::from(id == f.vocab.oov_id());
            }
        }
        if sink_error.is_none() {
            if let Err(e) = sink(&ids, row.label) {
                sink_error = Some(e);
            }
        }
        Ok(())
    })?;
    if let Some(e) = sink_error {
        return Err(e);
    }
    stats.oov = oov;
    Ok(stats)
}
