//! Keeps the client runtime polling its sockets while a phase runs instead of sleeping in `epoll_wait`.
//!
//! On loopback the kernel delivers an answer into the client's socket on the *server's* core, and when the
//! client sleeps it also wakes it there (an inter-processor interrupt; 2–3% of the server core per
//! 165-row request of the best student by `perf`), work that a remote client's own host would do. A client
//! that never sleeps has no waiter to wake, so the server's core does only the server's work. Only for
//! scenarios that give the generator cores apart from the server's: on shared cores polling takes the
//! server's time.
//!
//! Closed loops ([`crate::driver::run_closed`]) and open ones ([`crate::driver::run_segments`]), whose
//! sends a yielding task on the same runtime paces: a pacing *thread* beside a yielding runtime on one
//! core sent up to 5 ms late (the two took turns on the core), a pacing task sends within tens of µs.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A task that yields in a loop while switched on (the runtime then polls its I/O driver without
/// blocking between tasks) and waits, costing nothing, while switched off.
pub struct BusyPoll {
    on: Arc<AtomicBool>,
    wake: Arc<Notify>,
    enabled: bool,
}

impl BusyPoll {
    /// Starts the task on `rt`; with `enabled` false [`BusyPoll::during`] never switches it on.
    pub fn start(rt: &tokio::runtime::Runtime, enabled: bool) -> Self {
        let (on, wake) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        let (task_on, task_wake) = (on.clone(), wake.clone());
        rt.spawn(async move {
            loop {
                if task_on.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                } else {
                    task_wake.notified().await;
                }
            }
        });
        Self { on, wake, enabled }
    }

    /// Whether the client polls (no `--client-sleeps`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Runs `f` (a closed loop's turn) with the client polling; switched off again after it (raw runs, floors
    /// and offline scoring between turns then have the generator's core to themselves).
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.enabled {
            return f();
        }
        self.on.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        let out = f();
        self.on.store(false, Ordering::Relaxed);
        out
    }
}
