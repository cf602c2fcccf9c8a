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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut server = Self {
            port,
            child: None,
            dir: None,
        };
        server.restart();
        server
    }

    /// A server that writes every change to an append-only file in `dir`
    /// (fsync on each write), so a restart after `kill -9` loses nothing.
    pub fn start_persistent(dir: &std::path::Path) -> Self {
        let mut server = Self::start();
        server.kill();
        server.dir = Some(dir.to_owned());
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match &self.dir {
            Some(dir) => cmd
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => cmd.args(["--appendonly", "no"]),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server`")
            });
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
