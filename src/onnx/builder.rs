//! A minimal graph builder over the prost ONNX types.
use prost::Message;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::quant::{Precision, Range, WeightScale};
use super::{IR_VERSION, OPSET};

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// The dynamic batch dimension, named `batch`.
    Batch,
    Fixed(i64),
}

/// Collects nodes, initializers and the graph's signature; `finish` yields a `ModelProto`.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    next_id: usize,
    /// How dense layers are emitted (see [`GraphBuilder::dense`]).
    precision: Precision,
    weight_scale: WeightScale,
    /// Calibrated input ranges of the int8 dense layers, in emission order (none: dynamic activations).
    ranges: Option<std::collections::VecDeque<Range>>,
    /// Every dense layer's input, in emission order.
    dense_inputs: Vec<String>,
    /// Non-default operator domains used (each gets an opset import, version 1).
    domains: Vec<String>,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self::with_precision(name, Precision::Fp32)
    }

    pub fn with_precision(name: &str, precision: Precision) -> Self {
        let graph = GraphProto { name: Some(name.to_string()), ..Default::default() };
        Self {
            graph,
            next_id: 0,
            precision,
            weight_scale: WeightScale::default(),
            ranges: None,
            dense_inputs: Vec::new(),
            domains: Vec::new(),
        }
    }

    /// Static int8 activations: the dense layers' input ranges, in the order they will be emitted.
    pub fn set_activation_ranges(&mut self, ranges: Vec<Range>) {
        self.ranges = Some(ranges.into());
    }

    /// The next dense layer's calibrated range (`None`: dynamic). Panics when the calibration had fewer
    /// layers than this emission: both come from the same model, so that is a bug.
    pub(super) fn next_range(&mut self) -> Option<Range> {
        let ranges = self.ranges.as_mut()?;
        Some(ranges.pop_front().expect("one calibrated range per dense layer"))
    }

    pub(super) fn record_dense_input(&mut self, x: &str) {
        self.dense_inputs.push(x.to_string());
    }

    /// The dense layers' inputs emitted so far, in order.
    pub fn dense_inputs(&self) -> &[String] {
        &self.dense_inputs
    }

    /// How int8 weights are scaled (int8 precision only).
    pub fn set_weight_scale(&mut self, scale: WeightScale) {
        self.weight_scale = scale;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn weight_scale(&self) -> WeightScale {
        self.weight_scale
    }

    /// A fresh value name that starts with `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.input.push(value_info(name, elem, dims));
    }

    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Exposes an intermediate value as an extra output of unknown shape (calibration reads it).
    pub fn expose(&mut self, name: &str, elem: DataType) {
        let mut info = value_info(name, elem, &[]);
        if let Some(type_proto::Value::TensorType(t)) = info.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape = None;
        }
        self.graph.output.push(info);
    }

    /// A float32 constant tensor; returns its value name.
    pub fn initializer_f32(&mut self, hint: &str, shape: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(shape.iter().product::<i64>() as usize, data.len());
        self.initializer_raw(hint, DataType::Float, shape, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// An int64 constant tensor (shapes, axes, indices); returns its value name.
    pub fn initializer_i64(&mut self, hint: &str, shape: &[i64], data: &[i64]) -> String {
        self.initializer_raw(hint, DataType::Int64, shape, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A constant tensor of `elem` from its little-endian bytes; returns its value name.
    pub fn initializer_raw(&mut self, hint: &str, elem: DataType, shape: &[i64], raw: Vec<u8>) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(TensorProto {
            name: Some(name.clone()),
            dims: shape.to_vec(),
            data_type: Some(elem as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// Adds `op(inputs)` with one output named after the op; returns that output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.op_into(op, inputs, &out, attributes);
        out
    }

    /// Adds `domain`'s `op(inputs)` (an empty input name skips an optional input); returns its output.
    pub fn op_in(&mut self, domain: &str, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let out = self.op(op, inputs, attributes);
        if let Some(node) = self.graph.node.last_mut() {
            node.domain = Some(domain.to_string());
        }
        if !self.domains.iter().any(|d| d == domain) {
            self.domains.push(domain.to_string());
        }
        out
    }

    /// Adds `op(inputs)` writing to the given output name (e.g. a graph output).
    pub fn op_into(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) {
        let name = self.fresh(&format!("n_{}", op.to_ascii_lowercase()));
        self.graph.node.push(NodeProto {
            name: Some(name),
            op_type: Some(op.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attributes,
            ..Default::default()
        });
    }

    /// Adds a node with several named outputs (e.g. Split).
    pub fn op_multi(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) {
        let name = self.fresh(&format!("n_{}", op.to_ascii_lowercase()));
        self.graph.node.push(NodeProto {
            name: Some(name),
            op_type: Some(op.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attributes,
            ..Default::default()
        });
    }

    pub fn finish(self) -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            producer_name: Some("ensemble-serve".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            opset_import: std::iter::once(OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) })
                .chain(self.domains.iter().map(|d| OperatorSetIdProto { domain: Some(d.clone()), version: Some(1) }))
                .collect(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// Serialises a model to the bytes of an `.onnx` file.
pub fn to_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => DimValue::DimParam("batch".into()),
                Dim::Fixed(n) => DimValue::DimValue(*n),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: Some(elem as i32), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}
