//! Fusing the students' first dense layers: students whose representation is an MLP over the same
//! flattened embeddings (a shared table) run their first layers as one MatMul over the concatenated weights,
//! then split the result; every later layer stays per student.
use super::embedding::to_vec;
use super::student::Student;
use crate::onnx::builder::{attr_int, GraphBuilder};
use crate::onnx::{DenseWeights, InputRank};

/// Per student, the output of its first hidden layer when it was fused (`None`: emit that student whole).
/// Fewer than two fusable students leave everything unfused.
pub fn first_layers(g: &mut GraphBuilder, emb: &str, students: &[Box<dyn Student>]) -> Vec<Option<String>> {
    let firsts: Vec<Option<&super::layers::Dense>> =
        students.iter().map(|s| s.flat_mlp().and_then(|m| m.layers.first()).filter(|d| d.relu)).collect();
    let fusable: Vec<usize> = (0..students.len()).filter(|&k| firsts[k].is_some()).collect();
    if fusable.len() < 2 {
        return vec![None; students.len()];
    }
    let (mut weight, mut bias, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    let mut inp = 0;
    for &k in &fusable {
        let (w, b) = firsts[k].expect("fusable").folded();
        inp = w.size()[1];
        sizes.push(w.size()[0]);
        weight.extend(to_vec(&w));
        bias.extend(to_vec(&b));
    }
    let flat = g.op("Flatten", &[emb], vec![attr_int("axis", 1)]);
    let dense = DenseWeights { weight: &weight, bias: Some(&bias), out: sizes.iter().sum(), inp };
    let y = g.dense(&flat, &dense, InputRank::Two);
    let y = g.op("Relu", &[&y], vec![]);
    let split = g.initializer_i64("fused_sizes", &[sizes.len() as i64], &sizes);
    let parts: Vec<String> = fusable.iter().map(|k| g.fresh(&format!("first_{k}"))).collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.op_multi("Split", &[&y, &split], &refs, vec![attr_int("axis", 1)]);
    let mut out = vec![None; students.len()];
    for (k, part) in fusable.into_iter().zip(parts) {
        out[k] = Some(part);
    }
    out
}
