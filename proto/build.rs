//! Compiles `proto/floodgate/v1/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates prost messages and tonic clients and servers with tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/floodgate/v1/raft.proto",
        "proto/floodgate/v1/ledger.proto",
        "proto/floodgate/v1/admin.proto",
        "proto/floodgate/v1/usage.proto",
        "proto/floodgate/v1/projector.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
