//! Dataset readers (CSV/TSV, libsvm, Criteo; plain, `.gz`, `.xz`), the encode pass, the encoded-dataset
//! cache, the raw-file builders (Frappe, MovieLens-100K) and the synthetic Criteo-shaped generator.
pub mod cache;
pub mod encode;
pub mod inspect;
pub mod instances;
pub mod raw;
pub mod reader;
pub mod split;
pub mod synth;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use cache::{Dataset, EncodedSplit};
pub use encode::{encode_file, fit_encoder, SplitStats};
pub use reader::{RawRow, RowReader};
pub use split::Split;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // `error`, not `source`: the message holds it, and `{e:#}` would print a source twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}:{line}: {reason}")]
    Malformed { path: PathBuf, line: u64, reason: String },
    #[error("{path}: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error("dataset spec: {reason}")]
    Spec { reason: String },
    #[error(transparent)]
    Feature(#[from] crate::features::FeatureError),
}

impl DataError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), error: source }
    }
}

/// Opens a file, decompressing `.gz` and `.xz` transparently; `read_bytes` counts compressed bytes read
/// (for progress bars).
pub fn open_any(path: &Path, read_bytes: Arc<AtomicU64>) -> Result<Box<dyn Read + Send>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let counted = CountingReader { inner: file, count: read_bytes };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    Ok(match ext {
        "gz" => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, counted))),
        "xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(io::BufReader::with_capacity(1 << 16, counted))),
        _ => Box::new(counted),
    })
}

struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub use crate::paths::atomic_write;

/// A progress bar of `total` steps drawn with `template` on stderr, hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, template: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("static template").progress_chars("=> "));
    bar
}

/// A progress bar over bytes read.
pub fn byte_progress(label: &str, total: u64) -> indicatif::ProgressBar {
    let bar = progress_bar(total, "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}");
    bar.set_message(label.to_string());
    bar
}
