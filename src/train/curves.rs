//! `curves.png`: validation AUC per epoch, one line per student and one for the ensemble.
use std::path::Path;

use plotters::prelude::*;

use super::EpochLog;
use crate::config::StudentKind;
use crate::plot::{register_font, PlotError};

pub fn plot(epochs: &[EpochLog], students: &[StudentKind], path: &Path) -> Result<(), PlotError> {
    register_font()?;
    if epochs.is_empty() {
        return Err(PlotError::Empty);
    }
    let series: Vec<(String, Vec<f64>)> =
        std::iter::once(("ensemble".to_string(), epochs.iter().map(|e| e.valid.ensemble.auc).collect()))
            .chain(students.iter().enumerate().map(|(k, kind)| {
                (format!("student {k} ({kind})"), epochs.iter().map(|e| e.valid.students[k].auc).collect())
            }))
            .collect();
    let all = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(PlotError::draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Validation AUC per epoch", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1f64..(epochs.len().max(2) as f64), (lo - pad)..(hi + pad))
        .map_err(PlotError::draw)?;
    chart.configure_mesh().x_desc("epoch").y_desc("AUC").draw().map_err(PlotError::draw)?;
    for (i, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let width = if i == 0 { 3 } else { 1 };
        let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(j, v)| (j as f64 + 1.0, *v)).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))
            .map_err(PlotError::draw)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(PlotError::draw)?;
    root.present().map_err(PlotError::draw)
}
