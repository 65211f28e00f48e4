//! Mini-batches straight from the memory-mapped encoded split: gather rows, widen to i64, one tensor.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use crate::data::EncodedSplit;

pub struct Batches<'a> {
    split: &'a EncodedSplit,
    order: Vec<u32>,
    size: usize,
    next: usize,
    device: Device,
    ids: Vec<i64>,
    labels: Vec<f32>,
}

impl<'a> Batches<'a> {
    /// A seeded permutation of the rows (reproducible epochs).
    pub fn shuffled(split: &'a EncodedSplit, size: usize, seed: u64, device: Device) -> Self {
        let mut order: Vec<u32> = (0..split.rows as u32).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Self::with_order(split, order, size, device)
    }

    pub fn sequential(split: &'a EncodedSplit, size: usize, device: Device) -> Self {
        Self::with_order(split, (0..split.rows as u32).collect(), size, device)
    }

    fn with_order(split: &'a EncodedSplit, order: Vec<u32>, size: usize, device: Device) -> Self {
        let size = size.max(1);
        Self {
            split,
            order,
            size,
            next: 0,
            device,
            ids: Vec::with_capacity(size * split.width),
            labels: Vec::with_capacity(size),
        }
    }
}

impl Iterator for Batches<'_> {
    /// (ids B × width int64, labels B × 1 float)
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.order.len() {
            return None;
        }
        let rows = &self.order[self.next..(self.next + self.size).min(self.order.len())];
        self.next += rows.len();
        self.ids.clear();
        self.labels.clear();
        let (all_ids, all_labels, w) = (self.split.ids(), self.split.labels(), self.split.width);
        for &r in rows {
            let r = r as usize;
            self.ids.extend(all_ids[r * w..(r + 1) * w].iter().map(|&v| v as i64));
            self.labels.push(all_labels[r]);
        }
        let b = rows.len() as i64;
        let ids = Tensor::from_slice(&self.ids).view([b, w as i64]).to_device(self.device);
        let y = Tensor::from_slice(&self.labels).view([b, 1]).to_device(self.device);
        Some((ids, y))
    }
}
