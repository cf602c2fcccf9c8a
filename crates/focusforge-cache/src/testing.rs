//! Test support: a real `redis-server` child process that tests can kill
//! and restart. Enabled by the `testing` feature.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process on a port of its own.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where an append-only file is kept, when the server persists.
    dir: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that writes every change to an append-only file in `dir`
    /// (fsync on each write), so a restart after `kill -9` loses nothing.
    pub fn start_persistent(dir: &std::path::Path) -> Self {
        Self::start_with(Some(dir.to_owned()))
    }

    fn start_with(dir: Option<std::path::PathBuf>) -> Self {
        // A port found free can be taken before the server binds it; then
        // the server exits and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            let mut server = Self {
                port,
                child: None,
                dir: dir.clone(),
            };
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        if !self.try_start() {
            panic!("redis-server did not start on port {}", self.port);
        }
    }

    /// Starts on this port; false when the server exits or does not answer.
    fn try_start(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match &self.dir {
            Some(dir) => cmd
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => cmd.args(["--appendonly", "no"]),
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server`")
            });
        for _ in 0..500 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Some(pid) = server_pid(self.port) {
                // Another test's server may hold the port: ours must answer.
                if pid == child.id() {
                    self.child = Some(child);
                    return true;
                }
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// `kill -9`: no shutdown, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Reads a key straight from Redis, bypassing the code under test.
    pub fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--no-raw", "EXISTS", key])
            .output()
            .expect("redis-cli");
        let exists = String::from_utf8_lossy(&out.stdout).contains('1');
        exists.then(|| {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "GET", key])
                .output()
                .expect("redis-cli");
            let mut v = out.stdout;
            if v.last() == Some(&b'\n') {
                v.pop();
            }
            v
        })
    }
}

/// The process id of the Redis server answering on `port`, if one does.
fn server_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        // A bulk string: `$<length>\r\n<text>\r\n`; anything else (an
        // error while loading, say) is no answer yet.
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n") {
            let length: usize = head.strip_prefix('$')?.parse().ok()?;
            if body.len() >= length {
                return body
                    .get(..length)?
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .and_then(|v| v.trim().parse().ok());
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
