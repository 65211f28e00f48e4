//! Run outputs: metrics.jsonl, summary.json, report.md, curves.png, weights and encoder, written into a
//! temporary directory and renamed into place.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{EpochLog, Scores, SplitScores, TrainOutcome};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::run_summary::{KnowledgeAbundance, RunSummary, SplitSummary, StudentScores};

/// `summary.json`: what the exporter and people read.
pub fn summary(cfg: &TrainConfig, out: &TrainOutcome, data: &Dataset) -> RunSummary {
    let split = |s: &SplitScores| SplitSummary {
        ensemble: s.ensemble,
        students: s.students.iter().zip(&cfg.students).map(|(&scores, &kind)| StudentScores { kind, scores }).collect(),
    };
    let best = out.epochs.iter().find(|e| e.epoch == out.best_epoch);
    RunSummary {
        format: crate::run_summary::SUMMARY_FORMAT.into(),
        version: crate::run_summary::SUMMARY_VERSION,
        dataset: data.encoder.dataset.clone(),
        framework: cfg.framework,
        students: cfg.students.clone(),
        valid: split(&out.valid),
        test: out.test.as_ref().map(split),
        best_student: out.best_student,
        best_epoch: out.best_epoch,
        epochs_run: out.epochs.len(),
        train_samples_per_second: best.map(|e| e.samples_per_second),
        mean_epoch_seconds: out.epochs.iter().map(|e| e.seconds).sum::<f64>() / out.epochs.len().max(1) as f64,
        knowledge_abundance: KnowledgeAbundance {
            tau: cfg.ka_tau,
            per_student_layers: out.knowledge_abundance.clone(),
        },
        train_rows: data.train.rows as u64,
    }
}

/// `report.md`: students vs ensemble on valid and test, and the epoch history.
pub fn markdown(cfg: &TrainConfig, out: &TrainOutcome, data: &Dataset) -> String {
    let mut s = format!(
        "# Training run: {} on {}\n\nStudents: {}. Best epoch {} of {}; best student #{} ({}).\n\n",
        cfg.framework,
        data.encoder.dataset,
        cfg.students.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
        out.best_epoch,
        out.epochs.len(),
        out.best_student,
        cfg.students[out.best_student]
    );
    s.push_str(
        "| model | valid AUC | valid logloss | valid gAUC | test AUC | test logloss | test gAUC | KA (per layer) |\n",
    );
    s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let cell = |x: Option<&Scores>| match x {
        Some(v) => format!("{:.6} | {:.6} | {}", v.auc, v.logloss, v.gauc.map_or("–".into(), |g| format!("{g:.6}"))),
        None => "– | – | –".into(),
    };
    let test = out.test.as_ref();
    let _ =
        writeln!(s, "| **ensemble** | {} | {} | – |", cell(Some(&out.valid.ensemble)), cell(test.map(|t| &t.ensemble)));
    for (k, kind) in cfg.students.iter().enumerate() {
        let ka: Vec<String> = out.knowledge_abundance[k].iter().map(|v| format!("{v:.2}")).collect();
        let mark = if k == out.best_student { " (best)" } else { "" };
        let _ = writeln!(
            s,
            "| student {k}: {kind}{mark} | {} | {} | {} |",
            cell(Some(&out.valid.students[k])),
            cell(test.map(|t| &t.students[k])),
            ka.join(" ")
        );
    }
    s.push_str("\n## Epochs\n\n| epoch | train loss | lr | seconds | samples/s | valid AUC (ensemble) | valid AUC (students) |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for e in &out.epochs {
        let st: Vec<String> = e.valid.students.iter().map(|x| format!("{:.4}", x.auc)).collect();
        let _ = writeln!(
            s,
            "| {} | {:.5} | {:.0e} | {:.1} | {:.0} | {:.6} | {} |",
            e.epoch,
            e.train_loss,
            e.learning_rate,
            e.seconds,
            e.samples_per_second,
            e.valid.ensemble.auc,
            st.join(" ")
        );
    }
    s
}

/// Writes the run directory atomically; returns its final path (suffixed `-2`, `-3`, … if taken).
pub fn write_run(dir: &Path, cfg: &TrainConfig, out: &TrainOutcome, data: &Dataset) -> Result<PathBuf, std::io::Error> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new().prefix(".run-").tempdir_in(parent)?;
    let p = tmp.path();
    std::fs::write(p.join("config.toml"), toml::to_string_pretty(cfg).map_err(std::io::Error::other)?)?;
    let lines: Vec<String> = out.epochs.iter().map(|e| serde_json::to_string(e).expect("epoch log")).collect();
    std::fs::write(p.join("metrics.jsonl"), lines.join("\n") + "\n")?;
    std::fs::write(p.join("summary.json"), serde_json::to_vec_pretty(&summary(cfg, out, data))?)?;
    std::fs::write(p.join("report.md"), markdown(cfg, out, data))?;
    out.vs.save(p.join("weights.safetensors")).map_err(std::io::Error::other)?;
    data.encoder.save(&p.join("encoder.json")).map_err(std::io::Error::other)?;
    if let Err(e) = super::curves::plot(&out.epochs, &cfg.students, &p.join("curves.png")) {
        tracing::warn!("curves.png not drawn: {e}");
    }
    let mut target = dir.to_path_buf();
    for n in 2.. {
        if !target.exists() {
            break;
        }
        target = PathBuf::from(format!("{}-{n}", dir.display()));
    }
    std::fs::rename(tmp.keep(), &target)?;
    Ok(target)
}

/// One line per epoch for the log.
pub fn epoch_line(e: &EpochLog) -> String {
    let st: Vec<String> = e.valid.students.iter().map(|x| format!("{:.4}", x.auc)).collect();
    format!(
        "epoch {:>2}: loss {:.5}  {:.1} s ({:.0} samples/s)  valid AUC ensemble {:.6} students [{}]",
        e.epoch,
        e.train_loss,
        e.seconds,
        e.samples_per_second,
        e.valid.ensemble.auc,
        st.join(", ")
    )
}
