//! Inverted dropout with masks drawn by a fast seeded RNG on two threads. libtorch's CPU dropout draws its
//! Bernoulli mask element by element from one Mersenne twister on one thread (15% of a KDEF training step
//! in a profile); the distribution here is the same, Bernoulli(1 − p) per element scaled by 1/(1 − p).
use std::cell::Cell;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tch::{Kind, Tensor};

thread_local! {
    /// (seed, masks drawn so far) of the training running on this thread: per thread, so concurrent
    /// trainings in one process (tests) cannot interleave each other's mask streams.
    static STATE: Cell<(u64, u64)> = const { Cell::new((0x5EED, 0)) };
}

/// Seeds every later mask on this thread (training calls this with the run's seed: runs are reproducible).
pub fn seed(seed: u64) {
    STATE.set((seed, 0));
}

/// `x` with each element kept with probability 1 − p (scaled by 1/(1 − p)), or `x` itself when not training.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    if x.device() != tch::Device::Cpu {
        // On a GPU libtorch's own dropout draws the mask on the device (Philox); a host mask would be copied per call.
        return x.dropout(p, true);
    }
    let n = x.numel();
    let (seed, call) = STATE.get();
    STATE.set((seed, call + 1));
    let keep = 1.0 - p;
    // Keep when a 32-bit uniform draw is below keep · 2³².
    let threshold = (keep * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0f32; n];
    let half = n.div_ceil(2).next_multiple_of(2);
    std::thread::scope(|s| {
        for (part, chunk) in mask.chunks_mut(half.max(2)).enumerate() {
            let stream =
                seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (part as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            s.spawn(move || fill(chunk, SmallRng::seed_from_u64(stream), threshold, scale));
        }
    });
    let mask = Tensor::from_slice(&mask).view(x.size().as_slice()).to_device(x.device()).to_kind(Kind::Float);
    x * mask
}

fn fill(out: &mut [f32], mut rng: SmallRng, threshold: u32, scale: f32) {
    for pair in out.chunks_mut(2) {
        let r = rng.next_u64();
        for (slot, bits) in pair.iter_mut().zip([r as u32, (r >> 32) as u32]) {
            *slot = if bits < threshold { scale } else { 0.0 };
        }
    }
}
