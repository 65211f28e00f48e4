//! Time the hypervisor gave this virtual machine's CPUs to other guests (`steal` in /proc/stat). On a shared
//! host a phase whose server cores lost more than [`MAX_STEAL_SHARE`] of their time measured the other
//! tenants, not the server: it is marked invalid, like a phase whose generator sent late.

/// A phase whose server cores lost more than this share of their time to steal is not a result.
pub const MAX_STEAL_SHARE: f64 = 0.02;

/// Cumulative (all, stolen) clock ticks of each CPU, by CPU number.
#[derive(Debug, Clone, Default)]
pub struct CpuTicks(Vec<Option<(u64, u64)>>);

impl CpuTicks {
    /// The counters now; empty where /proc/stat cannot be read (then no share is known).
    pub fn now() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    /// `cpuN user nice system idle iowait irq softirq steal guest guest_nice` lines (guest time is already
    /// counted in user time, so all time is the sum of the first eight).
    fn parse(stat: &str) -> Self {
        let mut cpus = Vec::new();
        for line in stat.lines() {
            let mut words = line.split_ascii_whitespace();
            let Some(n) = words.next().and_then(|w| w.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok()) else {
                continue;
            };
            let ticks: Vec<u64> = words.take(8).map_while(|w| w.parse().ok()).collect();
            if cpus.len() <= n {
                cpus.resize(n + 1, None);
            }
            cpus[n] = (ticks.len() == 8).then(|| (ticks.iter().sum(), ticks[7]));
        }
        Self(cpus)
    }

    /// The share of `cpus`' time (every CPU when empty) stolen between `self` and `later`; `None` when the
    /// counters are unknown or no time passed.
    pub fn steal_share(&self, later: &CpuTicks, cpus: &[usize]) -> Option<f64> {
        let all: Vec<usize> = (0..later.0.len()).collect();
        let cpus = if cpus.is_empty() { &all } else { cpus };
        let (mut total, mut stolen) = (0u64, 0u64);
        for &c in cpus {
            let ((t0, s0), (t1, s1)) = (self.0.get(c).copied()??, later.0.get(c).copied()??);
            total += t1.saturating_sub(t0);
            stolen += s1.saturating_sub(s0);
        }
        (total > 0).then(|| stolen as f64 / total as f64)
    }
}

/// Reads the counters at each of `offsets` from now (ascending), on a thread of its own that sleeps between
/// them: the phase boundaries of a continuous run, whose phases are not timed apart.
pub fn sample_at(offsets: Vec<std::time::Duration>) -> std::thread::JoinHandle<Vec<CpuTicks>> {
    let start = std::time::Instant::now();
    std::thread::spawn(move || {
        offsets
            .into_iter()
            .map(|at| {
                std::thread::sleep((start + at).saturating_duration_since(std::time::Instant::now()));
                CpuTicks::now()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1";
    const AFTER: &str = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 55 0 5 40 0 0 0 0 0 0\ncpu1 85 0 5 40 0 0 2 18 0 0\nintr 1";

    #[test]
    fn the_share_of_the_named_cpus_time_that_was_stolen() {
        let (before, after) = (CpuTicks::parse(BEFORE), CpuTicks::parse(AFTER));
        // cpu1: 80 + 2 + 18 = 100 ticks passed, 18 stolen; cpu0: 50 passed, none stolen.
        assert_eq!(before.steal_share(&after, &[1]), Some(0.18));
        assert_eq!(before.steal_share(&after, &[0]), Some(0.0));
        assert_eq!(before.steal_share(&after, &[]), Some(18.0 / 150.0));
        assert_eq!(before.steal_share(&after, &[7]), None, "an unknown CPU gives no share");
        assert_eq!(CpuTicks::default().steal_share(&after, &[1]), None);
        assert_eq!(before.steal_share(&before, &[1]), None, "no time passed");
    }

    #[test]
    fn boundaries_are_read_at_their_offsets() {
        use std::time::{Duration, Instant};
        let t = Instant::now();
        let ticks = sample_at(vec![Duration::ZERO, Duration::from_millis(30)]).join().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30), "the last reading came early");
        assert_eq!(ticks.len(), 2);
        // On Linux /proc/stat lists every CPU, so both readings know this one.
        assert!(ticks.iter().all(|t| !t.0.is_empty()), "{ticks:?}");
    }
}
