//! A phase beside its ideal server: floors timed on either side of it, and phases run in turns with the ideal
//! server executed on their arrival traces (open loop) or with raw ONNX Runtime runs (closed loop), so that
//! both see this machine at nearly the same speed.
use std::time::Duration;

use anyhow::Result;

use crate::driver::{run_closed, run_segments, Collected, Load, Segment};
use crate::floors::{FloorSession, Floors};
use crate::replay::Replay;
use crate::scenario::Policy;
use crate::stats;

/// Times the floors again right after a phase and gives the phase its ideal server from the floors on either
/// side of it (the faster at each size) and its raw rows/s. Returns the floors the next phase starts from.
pub fn judge_against_floors(
    r: &mut stats::PhaseResult,
    policy: Policy,
    before: &Floors,
    (floor_session, replay): (&FloorSession, &Replay),
) -> Result<Floors> {
    let after = floor_session.measure(replay)?;
    let adjacent = Floors::min(before, &after);
    r.ideal_p99_ms = stats::ideal_p99_ms(&r.trace, &|rows| adjacent.service_us(policy, rows));
    let mean_rows = r.trace.iter().map(|&(_, n)| n as f64).sum::<f64>() / r.trace.len().max(1) as f64;
    r.raw_rows_per_s = Some(adjacent.rows_per_s(policy, mean_rows));
    Ok(after)
}

/// Seconds of a phase between two turns of the executed ideal server.
const IDEAL_CHUNK_S: f64 = 10.0;

/// Runs a phase in chunks of [`IDEAL_CHUNK_S`], each followed by the ideal server executed on that chunk's
/// arrival trace, so that both see the machine at nearly the same speed (it drifts by tens of percent within
/// minutes). Returns the phase's outcomes and the ideal server's latencies (µs).
pub fn run_beside_ideal(
    rt: &tokio::runtime::Runtime,
    load: &Load,
    seg: &Segment,
    next_request: &mut u64,
    bar: &indicatif::ProgressBar,
    floor_session: &FloorSession,
) -> Result<(Collected, Option<Vec<f64>>)> {
    let (mut all, mut ideal, mut done) = (Collected::default(), Vec::new(), Duration::ZERO);
    while done < seg.duration {
        let duration = (seg.duration - done).min(Duration::from_secs_f64(IDEAL_CHUNK_S));
        let chunk = Segment { duration, ..*seg };
        let c = run_segments(rt, load, std::slice::from_ref(&chunk), next_request, bar);
        ideal.extend(floor_session.run_ideal(load.replay, load.policy, &c.trace())?);
        all.absorb(c, done.as_nanos() as u64);
        done += duration;
    }
    Ok((all, Some(ideal)))
}

/// Seconds of a closed-loop phase between two turns of raw ONNX Runtime.
const RAW_TURN_S: f64 = 2.0;

/// Runs a closed-loop phase in turns of [`RAW_TURN_S`], each followed by as long of raw ONNX Runtime runs of
/// the same size on the server's core, so that both see the machine at nearly the same speed. Returns the
/// phase's outcomes and the raw runs' rows/s over all turns.
pub fn run_closed_beside_raw(
    rt: &tokio::runtime::Runtime,
    load: &Load,
    (seg, clients): (&Segment, usize),
    next_request: &mut u64,
    floor_session: &FloorSession,
) -> Result<(Collected, f64)> {
    let (mut all, mut raw_rows, mut done) = (Collected::default(), 0.0, Duration::ZERO);
    let bar = indicatif::ProgressBar::hidden();
    while done < seg.duration {
        let duration = (seg.duration - done).min(Duration::from_secs_f64(RAW_TURN_S));
        let turn = Segment { duration, ..*seg };
        let c = run_closed(rt, load, (&turn, clients), next_request, &bar);
        let rows = load.rows_dist.map_or(load.per_request, |d| d.mean.round().max(1.0) as usize);
        raw_rows += floor_session.raw_rows_per_s(load.replay, load.policy, rows, duration)? * duration.as_secs_f64();
        all.absorb(c, done.as_nanos() as u64);
        done += duration;
    }
    Ok((all, raw_rows / seg.duration.as_secs_f64()))
}
