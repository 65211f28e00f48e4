//! libtorch links and trains: a few Adam steps of logistic regression on a fixed problem lower the loss.
#![cfg(feature = "train")]

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn adam_steps_lower_the_loss() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), 8, 1, Default::default());
    let mut opt = nn::Adam::default().build(&vs, 5e-2).unwrap();
    let x = Tensor::randn([256, 8], (Kind::Float, Device::Cpu));
    let truth = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 0.0, 3.0, -1.0, 0.25, 2.0]).view([8, 1]);
    let y = x.matmul(&truth).gt(0.0).to_kind(Kind::Float);
    let loss =
        |m: &nn::Linear| m.forward(&x).binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean);
    let first = loss(&model).double_value(&[]);
    for _ in 0..20 {
        opt.backward_step(&loss(&model));
    }
    let last = loss(&model).double_value(&[]);
    assert!(last < first * 0.7, "loss {first} → {last} did not fall");
}
