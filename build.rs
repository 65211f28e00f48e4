//! Compiles the vendored `onnx.proto` and KServe v2 `grpc_service.proto` with protox (no `protoc` needed)
//! and, with feature `train`, links libtorch with an rpath so binaries run without `LD_LIBRARY_PATH`.
use std::path::PathBuf;

fn main() {
    compile_onnx_proto();
    compile_kserve_proto();
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_some() {
        link_libtorch();
    }
}

fn compile_onnx_proto() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"]).expect("vendored proto/onnx.proto must compile");
    prost_build::Config::new().compile_fds(fds).expect("prost code generation for onnx.proto");
}

/// The vendored KServe v2 gRPC protocol (Triton's `inference.GRPCInferenceService`).
fn compile_kserve_proto() {
    println!("cargo:rerun-if-changed=proto/kserve/grpc_service.proto");
    let fds = protox::compile(["grpc_service.proto"], ["proto/kserve"]).expect("vendored KServe v2 proto must compile");
    // The client (no transport: generic over any channel) is for the load generator.
    tonic_build::configure()
        .build_transport(false)
        .compile_fds(fds)
        .expect("tonic code generation for grpc_service.proto");
}

fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(root) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        // torch-sys fails first with its own message; say what to do.
        println!("cargo:warning=LIBTORCH is unset: run scripts/setup and `source` the env file it prints");
        return;
    };
    let lib = root.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // A CUDA libtorch: keep libtorch_cuda linked although no symbol of it is referenced directly.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
