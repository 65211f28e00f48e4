//! Offline metrics (no tch): exact AUC with ties as half, clipped logloss, group AUC.
use rustc_hash::FxHashMap;

/// Area under the ROC curve by average ranks; `None` when only one class is present.
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l > 0.5).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0; // 1-based average rank of the tie block
        let pos_in_block = order[i..=j].iter().filter(|&&k| labels[k] > 0.5).count() as f64;
        rank_sum += avg_rank * pos_in_block;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Mean binary cross-entropy with probabilities clipped to [1e-7, 1 − 1e-7].
pub fn logloss(probs: &[f32], labels: &[f32]) -> f64 {
    let eps = 1e-7;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = (p as f64).clamp(eps, 1.0 - eps);
            -(y as f64 * p.ln() + (1.0 - y as f64) * (1.0 - p).ln())
        })
        .sum();
    sum / probs.len().max(1) as f64
}

/// AUC per group weighted by the group's size; groups with one class only are skipped.
pub fn gauc(scores: &[f32], labels: &[f32], groups: &[u32]) -> Option<f64> {
    let mut by_group: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
    for (i, g) in groups.iter().enumerate() {
        by_group.entry(*g).or_default().push(i);
    }
    let (mut weighted, mut weight) = (0.0, 0.0);
    for rows in by_group.values() {
        let s: Vec<f32> = rows.iter().map(|&i| scores[i]).collect();
        let l: Vec<f32> = rows.iter().map(|&i| labels[i]).collect();
        if let Some(a) = auc(&s, &l) {
            weighted += a * rows.len() as f64;
            weight += rows.len() as f64;
        }
    }
    (weight > 0.0).then(|| weighted / weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        // Pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.4,0.1) win, (0.4,0.4) tie → 3.5 / 4.
        assert_eq!(auc(&[0.8, 0.4, 0.4, 0.1], &[1.0, 1.0, 0.0, 0.0]), Some(0.875));
        assert_eq!(auc(&[0.5, 0.5], &[1.0, 0.0]), Some(0.5));
        assert_eq!(auc(&[0.1, 0.9], &[1.0, 1.0]), None);
    }

    #[test]
    fn logloss_is_clipped() {
        let l = logloss(&[1.0, 0.0], &[0.0, 1.0]);
        assert!((l - -(1e-7f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn gauc_weights_groups_and_skips_single_class() {
        let scores = [0.9, 0.1, 0.2, 0.8, 0.5];
        let labels = [1.0, 0.0, 1.0, 0.0, 1.0];
        let groups = [1, 1, 2, 2, 3];
        assert_eq!(gauc(&scores, &labels, &groups), Some(0.5));
    }
}
