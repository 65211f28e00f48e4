//! Low-latency mode: one spinning thread per core at `SCHED_IDLE` priority keeps idle cores out of halt,
//! and the first of them also keeps idle graphs warm (`tick`, every `TICK`): after a few idle milliseconds
//! a graph's next run was measured 5–20% slower than back-to-back runs (`inference_time_us` of idle
//! arrivals, `loadgen --shots`), and a one-row run each half millisecond removes most of that.
//! On a virtual machine a halted vCPU takes tens of µs to wake (measured here: two wake-ups cost ~150 µs),
//! and a request at low load pays that on every hop. `SCHED_IDLE` threads run only when nothing else is
//! runnable and give way at once to any woken thread, so they take almost no CPU from the server — but the
//! cores read 100% busy to CPU accounting and draw power.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The running spinners; dropping this stops them.
pub struct IdleSpinners {
    stop: Arc<AtomicBool>,
    /// How many spinners run at `SCHED_IDLE` (the others exited at once rather than spin at normal priority).
    pub running: usize,
}

/// How often the first spinner calls its `tick`.
const TICK: Duration = Duration::from_micros(500);

/// Starts `threads` spinners; the first calls `tick` every [`TICK`] while it spins.
pub fn start(threads: usize, tick: Arc<dyn Fn() + Send + Sync>) -> IdleSpinners {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..threads {
        let (tx, stop, tick) = (tx.clone(), stop.clone(), tick.clone());
        let spawned = std::thread::Builder::new().name(format!("idle-spin-{i}")).spawn(move || {
            // Never spin at normal priority: that would take CPU from the server.
            let idle = set_sched_idle();
            let _ = tx.send(idle);
            let mut next_tick = std::time::Instant::now();
            while idle && !stop.load(Ordering::Relaxed) {
                if i == 0 && std::time::Instant::now() >= next_tick {
                    tick();
                    next_tick = std::time::Instant::now() + TICK;
                }
                std::hint::spin_loop();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "idle spinner not started");
        }
    }
    drop(tx);
    let mut running = 0;
    while let Ok(idle) = rx.recv_timeout(Duration::from_secs(1)) {
        running += usize::from(idle);
    }
    IdleSpinners { stop, running }
}

impl Drop for IdleSpinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn set_sched_idle() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 = the calling thread; a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(test)]
mod tests {
    /// The spinners really run at SCHED_IDLE (an unprivileged process may always lower its own priority).
    #[test]
    fn spinners_run_at_sched_idle() {
        let spinners = super::start(2, std::sync::Arc::new(|| {}));
        assert_eq!(spinners.running, 2);
    }
}
