//! Compiles every contract under `proto/focusforge/` with protox (a pure-Rust protobuf
//! compiler, so building needs no `protoc` on the machine), generates the
//! prost messages and tonic clients and servers from the descriptor set, and
//! writes the module tree (`modules.rs`): one module per package, plus a
//! [`Server`] impl for every service, so a new `.proto` file needs no edit
//! here or in `lib.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    // The contracts; `proto/google/` holds the error details' definitions
    // for generated clients, which the server takes from tonic-types.
    let ours = root.join("focusforge");
    println!("cargo:rerun-if-changed={}", ours.display());
    let mut files = Vec::new();
    find_protos(&root, &ours, &mut files)?;
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("focusforge_descriptor.bin"), fds.encode_to_vec())?;

    // package -> its services
    let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &fds.file {
        let package = file.package();
        if !package.starts_with("focusforge.") {
            continue;
        }
        let services = packages.entry(package.to_owned()).or_default();
        services.extend(file.service.iter().map(|s| s.name().to_owned()));
    }
    std::fs::write(out.join("modules.rs"), modules(&packages))?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Every `.proto` file under `dir`, relative to `root`.
fn find_protos(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            find_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto")
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// `focusforge.mood.v1` -> `pub mod mood { pub mod v1 { include!(..) } }`,
/// and `impl Server for` each of its service servers.
fn modules(packages: &BTreeMap<String, Vec<String>>) -> String {
    let mut code = String::new();
    for (package, services) in packages {
        let parts: Vec<&str> = package.split('.').skip(1).collect();
        let _ = writeln!(code, "/// `{package}`");
        for part in &parts {
            let _ = writeln!(code, "pub mod {part} {{");
        }
        let _ = writeln!(code, "tonic::include_proto!(\"{package}\");");
        for _ in &parts {
            code.push_str("}\n");
        }
        let path = parts.join("::");
        for service in services {
            let module = format!("{}_server", snake_case(service));
            let _ = writeln!(
                code,
                "impl<T> crate::Server for {path}::{module}::{service}Server<T> {{\n    \
                 fn max_request_bytes(self, limit: usize) -> Self {{\n        \
                 self.max_decoding_message_size(limit)\n    }}\n}}"
            );
        }
    }
    code
}

/// `TaskService` -> `task_service`, as tonic names the server module.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
