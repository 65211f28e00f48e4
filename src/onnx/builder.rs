//! A minimal graph builder over the prost ONNX types.
use prost::Message;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
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
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self { graph: GraphProto { name: Some(name.to_string()), ..Default::default() }, next_id: 0 }
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

    /// A float32 constant tensor; returns its value name.
    pub fn initializer_f32(&mut self, hint: &str, shape: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(shape.iter().product::<i64>() as usize, data.len());
        let name = self.fresh(hint);
        self.graph.initializer.push(TensorProto {
            name: Some(name.clone()),
            dims: shape.to_vec(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name
    }

    /// An int64 constant tensor (shapes, axes, indices); returns its value name.
    pub fn initializer_i64(&mut self, hint: &str, shape: &[i64], data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.graph.initializer.push(TensorProto {
            name: Some(name.clone()),
            dims: shape.to_vec(),
            data_type: Some(DataType::Int64 as i32),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
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
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
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
