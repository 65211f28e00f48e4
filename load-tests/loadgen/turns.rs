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
const IDEAL_TURN_S: f64 = 10.0;

/// Runs a phase in turns of [`IDEAL_TURN_S`], each followed by the ideal server executed on that turn's
/// arrival trace, so that both see the machine at nearly the same speed (it drifts by tens of percent within
/// minutes). Returns the phase's outcomes and the ideal server's latencies (µs).
pub fn run_beside_ideal(
    rt: &tokio::runtime::Runtime,
    load: &Load,
    seg: &Segment,
    next_request: &mut u64,
    bar: &indicatif::ProgressBar,
    floor_session: &FloorSession,
) -> Result<(Collected, Vec<f64>)> {
    let mut ideal = Vec::new();
    let all = in_turns(seg, (IDEAL_TURN_S, Join::Scheduled), |turn| {
        let c = run_segments(rt, load, std::slice::from_ref(turn), next_request, bar);
        ideal.extend(floor_session.run_ideal(load.replay, load.policy, &c.trace())?);
        Ok(c)
    })?;
    Ok((all, ideal))
}

/// Seconds of a closed-loop phase between two turns of raw ONNX Runtime: short, because this host's speed
/// moves within seconds and the two are compared turn against turn.
const RAW_TURN_S: f64 = 0.5;

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
    let (bar, mut raw_rows) = (indicatif::ProgressBar::hidden(), 0.0);
    let rows = load.rows_dist.map_or(load.per_request, |d| d.mean.round().max(1.0) as usize);
    let all = in_turns(seg, (RAW_TURN_S, Join::Answered), |turn| {
        let c = run_closed(rt, load, (turn, clients), next_request, &bar);
        let rows_per_s = floor_session.raw_rows_per_s(load.replay, load.policy, rows, turn.duration)?;
        raw_rows += rows_per_s * turn.duration.as_secs_f64();
        Ok(c)
    })?;
    Ok((all, raw_rows / seg.duration.as_secs_f64()))
}

/// Where the next turn starts on the phase's timeline.
#[derive(Clone, Copy)]
enum Join {
    /// After the turn's scheduled duration (open loop: the arrival trace stays one trace).
    Scheduled,
    /// After its last answer, if later: a closed loop's last requests are answered after its duration, and
    /// its rows/s must count the time the server took for them.
    Answered,
}

/// Runs `seg` as turns of at most `turn_s` seconds through `turn` (which also does what goes beside each)
/// and joins their outcomes into one phase on one timeline.
fn in_turns(
    seg: &Segment,
    (turn_s, join): (f64, Join),
    mut turn: impl FnMut(&Segment) -> Result<Collected>,
) -> Result<Collected> {
    let (mut all, mut done, mut offset_ns) = (Collected::default(), Duration::ZERO, 0u64);
    while done < seg.duration {
        let duration = (seg.duration - done).min(Duration::from_secs_f64(turn_s));
        let c = turn(&Segment { duration, ..*seg })?;
        let scheduled = duration.as_nanos() as u64;
        let length = match join {
            Join::Scheduled => scheduled,
            Join::Answered => c.last_answer_ns().map_or(scheduled, |end| end.max(scheduled)),
        };
        all.absorb(c, offset_ns);
        offset_ns += length;
        done += duration;
    }
    Ok(all)
}
