//! `serve data inspect`: both passes over every split, timed, with a per-field and per-split report.
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use super::encode::{encode_file, fit_encoder, SplitStats};
use super::DataError;
use super::Split;
use crate::features::{DatasetSpec, Encoder, FieldKind};

/// What inspection measured.
pub struct InspectReport {
    pub encoder: Encoder,
    /// The vocabulary pass over the training part.
    pub fit: SplitStats,
    /// The encode pass over each present part.
    pub parts: Vec<(Split, SplitStats)>,
}

/// Runs the vocabulary pass, then the encode pass over every part (discarding the ids).
pub fn inspect(spec: &DatasetSpec, progress: bool) -> Result<InspectReport, DataError> {
    let (encoder, fit) = fit_encoder(spec, progress)?;
    let mut parts = Vec::new();
    for part in Split::ALL {
        if part.source(spec).is_some() {
            let mut checksum = 0u64;
            let stats = encode_file(spec, &encoder, part, progress, |ids, _| {
                checksum = checksum.wrapping_add(ids[0] as u64); // keeps the encode work observable
                Ok(())
            })?;
            std::hint::black_box(checksum);
            parts.push((part, stats));
        }
    }
    Ok(InspectReport { encoder, fit, parts })
}

impl InspectReport {
    pub fn stats(&self, part: Split) -> Option<&SplitStats> {
        self.parts.iter().find(|(p, _)| *p == part).map(|(_, s)| s)
    }

    /// The report as text tables.
    pub fn render(&self, spec: &DatasetSpec) -> String {
        let mut splits = Table::new();
        splits.load_preset(UTF8_FULL_CONDENSED).set_header([
            "split",
            "rows",
            "label mean",
            "skipped",
            "encode s",
            "rows/s",
            "MB/s",
        ]);
        for (part, s) in &self.parts {
            splits.add_row([
                part.name().to_string(),
                s.rows.to_string(),
                format!("{:.4}", s.label_mean()),
                s.rejects.count.to_string(),
                format!("{:.3}", s.seconds),
                format!("{:.0}", s.rows_per_second()),
                format!("{:.1}", s.bytes as f64 / 1e6 / s.seconds.max(1e-9)),
            ]);
        }
        let mut fields = Table::new();
        fields.load_preset(UTF8_FULL_CONDENSED).set_header(["field", "kind", "vocabulary", "OOV valid", "OOV test"]);
        for (i, f) in self.encoder.fields.iter().enumerate() {
            let oov = |p| self.stats(p).and_then(|s| s.oov.get(i)).map_or("-".into(), |&(o, n)| rate(o, n));
            let kind = match &f.spec.kind {
                FieldKind::Categorical => "categorical".to_string(),
                FieldKind::NumericBucket => "numeric_bucket".to_string(),
                FieldKind::Sequence { max_len, .. } => format!("sequence ≤{max_len}"),
            };
            fields.add_row([
                f.spec.name.clone(),
                kind,
                f.vocab.size().to_string(),
                oov(Split::Valid),
                oov(Split::Test),
            ]);
        }
        let mut out = format!(
            "dataset {} ({:?}), vocabulary pass: {} rows in {:.3} s ({:.0} rows/s)\n{splits}\n{fields}\n",
            spec.name,
            spec.format,
            self.fit.rows,
            self.fit.seconds,
            self.fit.rows_per_second()
        );
        out.push_str("vocabulary = kept values + padding (id 0) + OOV; OOV = share of looked-up ids that are OOV\n");
        for (part, s) in self.parts.iter().map(|(p, s)| (p.name(), s)).chain([("train (vocabulary pass)", &self.fit)]) {
            if s.rejects.count > 0 {
                out.push_str(&format!("{part}: {} malformed lines skipped; first ones:\n", s.rejects.count));
                for e in &s.rejects.first {
                    out.push_str(&format!("  {e}\n"));
                }
            }
        }
        out
    }
}

fn rate(oov: u64, n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.3}%", 100.0 * oov as f64 / n as f64)
    }
}
