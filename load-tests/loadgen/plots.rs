//! PNG plots of a run: latency percentiles and served AUC against offered rate per policy, the p99 timeline
//! of continuous scenarios, and the server's RSS.
use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::report::RunResults;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette: the series of one server share it.
    pub color: usize,
    pub stroke: Stroke,
}

/// How a series is drawn: a server's p50 thin, its p99 thick, its ideal servers dashed and dotted.
#[derive(Clone, Copy, PartialEq)]
pub enum Stroke {
    Thin,
    Thick,
    Dashed,
    Dotted,
}

impl Stroke {
    /// (dash, gap) in pixels of a broken line; `None` for a solid one.
    fn dashes(self) -> Option<(i32, i32)> {
        match self {
            Stroke::Dashed => Some((8, 5)),
            Stroke::Dotted => Some((2, 4)),
            Stroke::Thin | Stroke::Thick => None,
        }
    }
}

impl Series {
    fn new(name: String, points: Vec<(f64, f64)>, color: usize, stroke: Stroke) -> Self {
        Self { name, points, color, stroke }
    }
}

/// One line chart; `log_y` for latencies, whose tails span orders of magnitude.
fn line_chart(path: &Path, title: &str, axes: (&str, &str), log_y: bool, series: &[Series]) -> Result<(), String> {
    let pts = || series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite());
    if pts().next().is_none() {
        return Ok(());
    }
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 24)).margin(15).x_label_area_size(45).y_label_area_size(70);
    let colors = [
        BLUE,
        RED,
        GREEN,
        MAGENTA,
        CYAN,
        BLACK,
        RGBColor(255, 140, 0),
        RGBColor(128, 0, 128),
        RGBColor(0, 128, 128),
        RGBColor(128, 128, 0),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart.configure_mesh().x_desc(axes.0).y_desc(axes.1).draw().map_err(|e| e.to_string())?;
            for s in series {
                let c = colors[s.color % colors.len()];
                let style = c.stroke_width(if s.stroke == Stroke::Thin { 1 } else { 2 });
                let pts = s.points.iter().copied();
                let drawn = match s.stroke.dashes() {
                    None => chart.draw_series(LineSeries::new(pts, style)),
                    Some((dash, gap)) => chart.draw_series(DashedLineSeries::new(pts, dash, gap, style)),
                };
                // The legend's 24 px sample: one dash of that length for a solid line.
                let (dash, gap) = s.stroke.dashes().unwrap_or((24, 0));
                drawn
                    .map_err(|e| e.to_string())?
                    .label(s.name.clone())
                    .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 24, y)], dash, gap, style));
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    if log_y {
        let (lo, hi) = (y0.max(1e-3) / 1.5, y1.max(1e-3) * 1.5);
        draw!(b.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(|e| e.to_string())?);
    } else {
        let pad = ((y1 - y0) * 0.1).max(1e-4);
        draw!(b.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(|e| e.to_string())?);
    }
    root.present().map_err(|e| e.to_string())
}

/// Share of each window's answered requests per tier, when the policy used more than one tier.
fn tier_share(
    r: &RunResults,
    policy: &str,
    windows: &[crate::stats::Window],
    dir: &Path,
) -> Result<Option<String>, String> {
    let names: std::collections::BTreeSet<&String> = windows.iter().flat_map(|w| w.tiers.keys()).collect();
    if names.len() < 2 {
        return Ok(None);
    }
    let series: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let points = windows
                .iter()
                .filter(|w| w.ok > 0)
                .map(|w| (w.t_s, *w.tiers.get(*name).unwrap_or(&0) as f64 / w.ok as f64))
                .collect();
            Series::new(name.to_string(), points, i, Stroke::Thick)
        })
        .collect();
    let file = format!("tiers_{policy}.png");
    let title =
        format!("{}: {policy} — share of answers per tier, {} ms windows", r.scenario.name, r.scenario.window_ms);
    line_chart(&dir.join(&file), &title, ("seconds", "share of answered requests"), false, &series)?;
    Ok(Some(file))
}

/// Writes every plot that applies to `r` into `dir`; returns the file names written.
pub fn write_all(r: &RunResults, dir: &Path) -> Result<Vec<String>, String> {
    ensemble_serve::plot::register_font().map_err(|e| e.to_string())?;
    let mut written = Vec::new();
    let policies: Vec<String> = r.policies();
    if !r.scenario.continuous && r.scenario.phases.len() > 1 {
        let mut lat = Vec::new();
        let mut auc = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let rows: Vec<_> = r.phases.iter().filter(|x| x.policy == *p).collect();
            let pick = |f: fn(&crate::stats::Percentiles) -> f64| {
                rows.iter().filter_map(|x| x.latency.as_ref().map(|l| (x.offered_rps, f(l)))).collect()
            };
            lat.push(Series::new(format!("{p} p50"), pick(|l| l.p50_ms), i, Stroke::Thin));
            lat.push(Series::new(format!("{p} p99"), pick(|l| l.p99_ms), i, Stroke::Thick));
            // The ideal one-core FIFO servers on the same arrival traces, where the scenario has them.
            let ideal = |f: fn(&&crate::stats::PhaseResult) -> Option<f64>| -> Vec<(f64, f64)> {
                rows.iter().filter_map(|x| f(x).map(|v| (x.offered_rps, v))).collect()
            };
            for (label, points, stroke) in [
                ("ideal executed", ideal(|x| x.ideal_run_p99_ms), Stroke::Dashed),
                ("ideal from floors", ideal(|x| x.ideal_p99_ms), Stroke::Dotted),
            ] {
                if !points.is_empty() {
                    lat.push(Series::new(format!("{p} p99, {label}"), points, i, stroke));
                }
            }
            let served = rows.iter().filter_map(|x| x.served_auc.map(|a| (x.offered_rps, a))).collect();
            auc.push(Series::new(format!("{p} served"), served, i, Stroke::Thick));
        }
        if let Some(first) = policies.first() {
            let off = r
                .phases
                .iter()
                .filter(|x| x.policy == *first)
                .filter_map(|x| x.offline_auc.map(|a| (x.offered_rps, a)));
            auc.push(Series::new("ensemble offline".into(), off.collect(), policies.len(), Stroke::Dashed));
        }
        let name = &r.scenario.name;
        line_chart(
            &dir.join("latency_vs_rate.png"),
            &format!("{name}: latency vs offered rate"),
            ("offered requests/s", "latency (ms, log)"),
            true,
            &lat,
        )?;
        line_chart(
            &dir.join("auc_vs_rate.png"),
            &format!("{name}: served AUC vs offered rate"),
            ("offered requests/s", "AUC"),
            false,
            &auc,
        )?;
        written.extend(["latency_vs_rate.png".to_string(), "auc_vs_rate.png".to_string()]);
    }
    if !r.timelines.is_empty() {
        let series: Vec<Series> = r
            .timelines
            .iter()
            .enumerate()
            .map(|(i, (p, w))| {
                let points = w.iter().filter_map(|w| w.p99_ms.map(|v| (w.t_s, v))).collect();
                Series::new(format!("{p} p99"), points, i, Stroke::Thick)
            })
            .collect();
        line_chart(
            &dir.join("timeline.png"),
            &format!("{}: p99 per {} ms window", r.scenario.name, r.scenario.window_ms),
            ("seconds", "p99 latency (ms, log)"),
            true,
            &series,
        )?;
        written.push("timeline.png".into());
        for (policy, windows) in &r.timelines {
            written.extend(tier_share(r, policy, windows, dir)?);
        }
    }
    if r.rss_kib.len() > 1 {
        let points = r.rss_kib.iter().map(|&(t, kb)| (t, kb as f64 / 1024.0)).collect();
        let s = Series::new("server RSS".into(), points, 0, Stroke::Thick);
        line_chart(
            &dir.join("rss.png"),
            &format!("{}: server resident memory", r.scenario.name),
            ("seconds", "RSS (MiB)"),
            false,
            &[s],
        )?;
        written.push("rss.png".into());
    }
    Ok(written)
}
