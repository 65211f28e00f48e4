//! `--isolate-server-cores`: keeps the server's cores for the server while a run lasts, as a latency-tuned
//! host does (`isolcpus`, tuned's cpu-partitioning): kernel threads allowed on any CPU, and unbound
//! workqueues, are moved off them and put back when the run ends (also on SIGINT/SIGTERM, by main.rs's handler). On this VM the
//! DAMON reclaim thread `kdamond.0` held the pinned server's core for up to 19.5 ms at a time (`perf record
//! -e sched:sched_switch -C 1`), stretching single ONNX Runtime runs 3×. Per-CPU kernel threads
//! (ksoftirqd/N, kworker/N:M) cannot move. Needs root; without it the run goes on with the cores shared and
//! says so. Off by default: a load generator should not change the host unasked.
use std::sync::Mutex;

use crate::server::{affinity, set_affinity};

/// `PF_KTHREAD` in /proc/PID/stat's flags: a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;
/// The CPUs unbound workqueues may use, as a hex mask.
const WORKQUEUE_CPUMASK: &str = "/sys/devices/virtual/workqueue/cpumask";

/// What was changed, for [`restore`]: (thread, its CPUs before) and the workqueue mask before.
#[derive(Default)]
struct Saved {
    threads: Vec<(libc::pid_t, Vec<usize>)>,
    workqueue_mask: Option<String>,
}

/// Process-wide so that a signal handler can put things back too.
static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

/// Puts back what [`Isolation::apply`] changed, when dropped.
pub struct Isolation {
    /// For the run's summary: what was moved off the server's cores, or why nothing was.
    pub note: String,
}

impl Isolation {
    /// Moves movable kernel threads and unbound workqueues off `server_cpus`; nothing when either list is
    /// empty (the scenario does not keep the server apart from the generator).
    pub fn apply(server_cpus: &[usize], generator_cpus: &[usize]) -> Self {
        if server_cpus.is_empty() || generator_cpus.is_empty() {
            return Self { note: "cores shared (the scenario does not pin the server apart)".into() };
        }
        let (mut saved, mut names, mut refused) = (Saved::default(), Vec::new(), None);
        for (tid, name) in kernel_threads() {
            let Some(before) = affinity(tid) else { continue };
            let rest: Vec<usize> = before.iter().copied().filter(|c| !server_cpus.contains(c)).collect();
            if rest.is_empty() || rest.len() == before.len() {
                continue; // bound to the server's cores, or already off them
            }
            match set_affinity(tid, &rest) {
                Ok(()) => {
                    saved.threads.push((tid, before));
                    names.push(name);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {} // a per-CPU thread
                Err(e) => refused = Some(e),
            }
        }
        saved.workqueue_mask = narrow_workqueues(server_cpus);
        let note = describe(&names, saved.workqueue_mask.is_some(), refused);
        eprintln!("{note}");
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        Self { note }
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts back every thread's CPUs and the workqueue mask (threads that exited meanwhile are skipped); once.
pub fn restore() {
    let Some(saved) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    for (tid, cpus) in saved.threads {
        let _ = set_affinity(tid, &cpus);
    }
    if let Some(mask) = saved.workqueue_mask {
        let _ = std::fs::write(WORKQUEUE_CPUMASK, mask);
    }
}

/// (tid, name) of every kernel thread.
fn kernel_threads() -> Vec<(libc::pid_t, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok());
    pids.filter_map(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, flags) = parse_stat(&stat)?;
        (flags & PF_KTHREAD != 0).then_some((pid, name))
    })
    .collect()
}

/// The name and flags of a /proc/PID/stat line: `pid (name) state ppid pgrp session tty tpgid flags …`
/// (the name may hold spaces and parentheses, so it ends at the last `)`).
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let flags = stat.get(close + 1..)?.split_ascii_whitespace().nth(6)?.parse().ok()?;
    Some((stat.get(open + 1..close)?.to_string(), flags))
}

/// Takes `server_cpus` out of the unbound workqueues' mask; the mask before when it changed.
fn narrow_workqueues(server_cpus: &[usize]) -> Option<String> {
    let before = std::fs::read_to_string(WORKQUEUE_CPUMASK).ok()?.trim().to_string();
    let mask = u128::from_str_radix(&before.replace(',', ""), 16).ok()?;
    let server = server_cpus.iter().filter(|&&c| c < 128).fold(0u128, |m, &c| m | 1 << c);
    let after = mask & !server;
    if after == 0 || after == mask {
        return None;
    }
    std::fs::write(WORKQUEUE_CPUMASK, format!("{after:x}")).ok()?;
    Some(before)
}

/// "kept off the server's cores: kdamond.0, rcu_preempt, … and unbound workqueues", or why not.
fn describe(names: &[String], workqueues: bool, refused: Option<std::io::Error>) -> String {
    // Workers carry their current work item after a dash (kworker/u8:3-events_unbound): one name each.
    let mut short: Vec<&str> = names.iter().map(|n| n.split('-').next().unwrap_or(n)).collect();
    short.sort_unstable();
    short.dedup();
    let mut moved = short.join(", ");
    if workqueues {
        moved += if moved.is_empty() { "unbound workqueues" } else { " and unbound workqueues" };
    }
    match (moved.is_empty(), refused) {
        (false, _) => format!("kept off the server's cores: {moved}"),
        (true, Some(e)) => format!("cores shared with movable kernel threads (moving them: {e}; needs root)"),
        (true, None) => "no movable kernel thread was on the server's cores".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_flags_whatever_the_name_holds() {
        let kthread = "83 (kdamond.0) I 2 0 0 0 -1 2129984 0 0 0 0 3000 436 0 0 20 0 1 0 93 0 0";
        assert_eq!(parse_stat(kthread), Some(("kdamond.0".into(), 2_129_984)));
        assert_ne!(2_129_984 & PF_KTHREAD, 0, "kdamond is a kernel thread");
        let user = "77 (a (b) c) S 1 77 77 0 -1 4194560 9 0 0 0 1 1 0 0 20 0 1 0 50 0 0";
        assert_eq!(parse_stat(user), Some(("a (b) c".into(), 4_194_560)));
        assert_eq!(4_194_560 & PF_KTHREAD, 0);
        assert_eq!(parse_stat("12 (short) S 1"), None);
    }

    #[test]
    fn the_note_names_each_thread_once() {
        let names = ["kworker/u8:3-events_unbound", "kdamond.0", "kworker/u8:3-flush"].map(String::from);
        assert_eq!(
            describe(&names, true, None),
            "kept off the server's cores: kdamond.0, kworker/u8:3 and unbound workqueues"
        );
        let denied = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(describe(&[], false, Some(denied)).starts_with("cores shared with movable kernel threads"));
    }
}
