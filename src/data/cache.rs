//! Encoded datasets on disk: row-major u32 ids and f32 labels per split, memory-mapped, in a directory keyed
//! by a hash of the input files' contents and the spec, so a second run skips parsing and a changed input
//! or spec is re-encoded.
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::encode::{encode_file, fit_encoder, SplitStats};
use super::DataError;
use super::Split;
use crate::features::{DatasetSpec, Encoder};

/// Bump when the on-disk layout or the encoding rules change.
const CACHE_FORMAT: u32 = 1;

/// One encoded split: `rows × width` ids and `rows` labels.
pub struct EncodedSplit {
    pub rows: usize,
    pub width: usize,
    ids: Store,
    labels: Store,
}

enum Store {
    Mapped(Mmap),
    Empty,
}

impl Store {
    fn bytes(&self) -> &[u8] {
        match self {
            Store::Mapped(m) => m,
            Store::Empty => &[],
        }
    }
}

impl EncodedSplit {
    /// All ids, row-major.
    pub fn ids(&self) -> &[u32] {
        bytemuck::cast_slice(self.ids.bytes())
    }
    pub fn labels(&self) -> &[f32] {
        bytemuck::cast_slice(self.labels.bytes())
    }
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids()[i * self.width..(i + 1) * self.width]
    }
}

/// Per-split facts kept next to the encoded data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartMeta {
    pub part: Split,
    pub rows: u64,
    pub label_mean: f64,
    pub skipped: u64,
    pub first_errors: Vec<String>,
    pub oov: Vec<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    width: usize,
    parts: Vec<PartMeta>,
}

/// An encoded dataset: the fitted encoder and its splits (valid/test may be absent).
pub struct Dataset {
    pub encoder: Encoder,
    pub train: EncodedSplit,
    pub valid: Option<EncodedSplit>,
    pub test: Option<EncodedSplit>,
    pub parts: Vec<PartMeta>,
    pub dir: PathBuf,
    pub from_cache: bool,
}

impl Dataset {
    /// Loads the encoded dataset from `cache_root`, building it first when absent or stale.
    pub fn open(spec: &DatasetSpec, cache_root: &Path, progress: bool) -> Result<Self, DataError> {
        let key = cache_key(spec)?;
        let dir = cache_root.join(format!("{}-{}", sanitize(&spec.name), &key[..16]));
        let from_cache = dir.join("meta.json").is_file();
        if !from_cache {
            build(spec, &dir, progress)?;
        }
        load(&dir, from_cache)
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// blake3 over the format version, the spec, and every input file's bytes.
pub fn cache_key(spec: &DatasetSpec) -> Result<String, DataError> {
    let mut h = blake3::Hasher::new();
    h.update(&CACHE_FORMAT.to_le_bytes());
    h.update(serde_json::to_string(spec).expect("spec serialises").as_bytes());
    let files = &spec.files;
    for path in [Some(&files.train), files.valid.as_ref(), files.test.as_ref()].into_iter().flatten() {
        let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

fn build(spec: &DatasetSpec, dir: &Path, progress: bool) -> Result<(), DataError> {
    let parent = dir.parent().expect("cache dir has a parent");
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let tmp = tempfile::Builder::new().prefix(".building-").tempdir_in(parent).map_err(|e| DataError::io(parent, e))?;
    let (encoder, _) = fit_encoder(spec, progress)?;
    encoder.save(&tmp.path().join("encoder.json"))?;
    let mut parts = Vec::new();
    for part in Split::ALL {
        if part.source(spec).is_none() {
            continue;
        }
        let stats = write_part(spec, &encoder, part, tmp.path(), progress)?;
        parts.push(PartMeta {
            part,
            rows: stats.rows,
            label_mean: stats.label_mean(),
            skipped: stats.rejects.count,
            first_errors: stats.rejects.first,
            oov: stats.oov,
        });
    }
    let meta = Meta { format: CACHE_FORMAT, width: encoder.width(), parts };
    let meta_path = tmp.path().join("meta.json");
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).expect("meta serialises"))
        .map_err(|e| DataError::io(&meta_path, e))?;
    let tmp = tmp.keep();
    // Another process may have finished the same build first: keep theirs.
    if std::fs::rename(&tmp, dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn write_part(
    spec: &DatasetSpec,
    encoder: &Encoder,
    part: Split,
    dir: &Path,
    progress: bool,
) -> Result<SplitStats, DataError> {
    let create = |name: String| {
        let path = dir.join(name);
        File::create(&path).map(|f| BufWriter::with_capacity(1 << 20, f)).map_err(|e| DataError::io(&path, e))
    };
    let mut ids = create(format!("{}.ids", part.name()))?;
    let mut labels = create(format!("{}.labels", part.name()))?;
    let stats = encode_file(spec, encoder, part, progress, |row, label| {
        ids.write_all(bytemuck::cast_slice(row))
            .and_then(|_| labels.write_all(&label.to_le_bytes()))
            .map_err(|e| DataError::io(dir, e))
    })?;
    ids.flush().and_then(|_| labels.flush()).map_err(|e| DataError::io(dir, e))?;
    Ok(stats)
}

fn load(dir: &Path, from_cache: bool) -> Result<Dataset, DataError> {
    let meta_path = dir.join("meta.json");
    let bytes = std::fs::read(&meta_path).map_err(|e| DataError::io(&meta_path, e))?;
    let meta: Meta = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::Header { path: meta_path.clone(), reason: e.to_string() })?;
    let encoder = Encoder::load(&dir.join("encoder.json"))?;
    let mut splits = [None, None, None];
    for pm in &meta.parts {
        splits[pm.part.index()] = Some(map_split(dir, pm.part, pm.rows as usize, meta.width)?);
    }
    let [train, valid, test] = splits;
    let train = train.ok_or_else(|| DataError::Header { path: meta_path, reason: "no train split".into() })?;
    Ok(Dataset { encoder, train, valid, test, parts: meta.parts, dir: dir.to_path_buf(), from_cache })
}

fn map_split(dir: &Path, part: Split, rows: usize, width: usize) -> Result<EncodedSplit, DataError> {
    let map = |name: String, want: usize| -> Result<Store, DataError> {
        let path = dir.join(name);
        let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(&path, e))?.len() as usize;
        if len != want {
            return Err(DataError::Header {
                path,
                reason: format!("{len} bytes, expected {want} (delete the cache dir)"),
            });
        }
        if len == 0 {
            return Ok(Store::Empty);
        }
        // SAFETY: the cache files are written once, renamed into place, and never modified afterwards.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))?;
        Ok(Store::Mapped(mmap))
    };
    Ok(EncodedSplit {
        rows,
        width,
        ids: map(format!("{part}.ids"), rows * width * 4)?,
        labels: map(format!("{part}.labels"), rows * 4)?,
    })
}
