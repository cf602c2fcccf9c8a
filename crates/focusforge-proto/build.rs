//! Compiles the contracts under `proto/` with protox (a pure-Rust protobuf
//! compiler, so building needs no `protoc` on the machine) and generates the
//! prost messages and tonic clients and servers from the descriptor set.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "focusforge/common/v1/common.proto",
        "focusforge/chain/v1/chain.proto",
        "focusforge/memory/v1/memory.proto",
        "focusforge/tasks/v1/tasks.proto",
        "focusforge/users/v1/users.proto",
        "focusforge/planner/v1/planner.proto",
        "focusforge/jobs/v1/jobs.proto",
        "focusforge/mcp/v1/mcp.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());

    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("focusforge_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
