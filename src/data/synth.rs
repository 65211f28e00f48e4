//! SYNTHETIC Criteo-shaped rows for scale and load tests only (never for quality claims): label, 13 integer
//! fields and 26 hashed categoricals, tab-separated, blanks allowed. Categorical values follow a Zipf law
//! over per-field cardinalities shaped like Criteo's (up to millions); labels come from a fixed hidden
//! logistic scoring function of the values, so a model can learn them and AUC is meaningful.
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};

use super::DataError;

/// Criteo Kaggle's categorical cardinalities, the shape the generator imitates (scaled by `scale`).
const CARDINALITIES: [u64; 26] = [
    1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683, 8_351_593, 3_194, 27, 14_992, 5_461_306,
    10, 5_652, 2_173, 4, 7_046_547, 18, 15, 286_181, 105, 142_572,
];

pub struct SynthConfig {
    pub rows: u64,
    pub seed: u64,
    /// Multiplies every cardinality (at least 2 values per field remain).
    pub scale: f64,
}

/// A value's contribution to the hidden logit: a fixed pseudo-random weight in [-1, 1) per (field, value).
#[inline]
fn weight(field: u64, value: u64) -> f64 {
    let mut z = value.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ field.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 32;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Writes `cfg.rows` rows to `out` (atomically); returns the label mean.
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<f64, DataError> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| DataError::io(dir, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let zipfs: Vec<Zipf<f64>> = CARDINALITIES
        .iter()
        .map(|&c| Zipf::new(((c as f64 * cfg.scale) as u64).max(2), 1.05).expect("valid Zipf parameters"))
        .collect();
    let numerics: Vec<LogNormal<f64>> =
        (0..13).map(|j| LogNormal::new(0.5 + 0.3 * j as f64, 1.2).expect("valid log-normal")).collect();
    let mut positives = 0u64;
    let mut line = String::with_capacity(512);
    for _ in 0..cfg.rows {
        line.clear();
        let mut logit = -1.6;
        for (j, dist) in numerics.iter().enumerate() {
            line.push('\t');
            if rng.gen_bool(0.1 + 0.02 * j as f64) {
                continue; // blank, as Criteo has
            }
            let v = dist.sample(&mut rng).floor() as i64;
            logit += 0.3 * weight(100 + j as u64, crate::features::encoder::numeric_bucket(v as f64) as u64);
            line.push_str(itoa::Buffer::new().format(v));
        }
        for (j, dist) in zipfs.iter().enumerate() {
            line.push('\t');
            if rng.gen_bool(0.03) {
                continue;
            }
            let rank = dist.sample(&mut rng) as u64;
            logit += 0.45 * weight(j as u64, rank);
            let token = (weight(1000 + j as u64, rank).to_bits() >> 20) as u32;
            line.push_str(&format!("{token:08x}"));
        }
        let label = rng.gen_bool(1.0 / (1.0 + (-logit).exp()));
        positives += u64::from(label);
        let io = |e| DataError::io(out, e);
        w.write_all(if label { b"1" } else { b"0" }).map_err(io)?;
        w.write_all(line.as_bytes()).and_then(|_| w.write_all(b"\n")).map_err(io)?;
    }
    w.flush().map_err(|e| DataError::io(out, e))?;
    drop(w);
    tmp.persist(out).map_err(|e| DataError::io(out, e.error))?;
    Ok(positives as f64 / cfg.rows.max(1) as f64)
}
