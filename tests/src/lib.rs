//! End-to-end tests live in `tests/it`; this library holds what the bench
//! binaries in `tests/benches` share.

/// The value after `name` on the command line (`--seconds 20`).
pub fn arg(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
}

/// The `focusforge` binary of this target directory: the release build
/// when there is one, else the debug build.
pub fn focusforge_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(std::path::Path::parent);
    let target = profile_dir.and_then(std::path::Path::parent);
    for profile in ["release", "debug"] {
        if let Some(bin) = target.map(|t| t.join(profile).join("focusforge"))
            && bin.exists()
        {
            return bin;
        }
    }
    profile_dir.map_or_else(|| "focusforge".into(), |d| d.join("focusforge"))
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A process's resident set size in KiB (Linux), 0 when unknown.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
