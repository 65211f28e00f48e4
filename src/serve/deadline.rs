//! Sub-millisecond wake-ups at request deadlines. tokio's timer rounds every deadline up to its next
//! millisecond tick, so a 5 ms timeout would answer 5–6 ms late; one thread with fine timer slack waits on
//! a heap of deadlines instead and fires each within tens of µs.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

struct Entry {
    at: Instant,
    fire: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
struct Timer {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::default());
        std::thread::Builder::new().name("deadlines".into()).spawn(move || t.run()).expect("spawn deadline thread");
        t
    })
}

impl Timer {
    fn run(&self) {
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes the calling thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
        }
        let mut heap = self.heap.lock().expect("deadline heap");
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                let Reverse(e) = heap.pop().expect("peeked");
                let _ = e.fire.send(());
            }
            let next = heap.peek().map(|Reverse(e)| e.at - now);
            heap = match next {
                Some(wait) => self.changed.wait_timeout(heap, wait).expect("deadline heap").0,
                None => self.changed.wait(heap).expect("deadline heap"),
            };
        }
    }
}

/// Resolves at `at` (within tens of µs); a receiver dropped before then just leaves a dead entry.
pub fn at(at: Instant) -> oneshot::Receiver<()> {
    let (fire, rx) = oneshot::channel();
    let t = timer();
    let mut heap = t.heap.lock().expect("deadline heap");
    let earliest = heap.peek().is_none_or(|Reverse(e)| at < e.at);
    heap.push(Reverse(Entry { at, fire }));
    drop(heap);
    if earliest {
        t.changed.notify_one();
    }
    rx
}
