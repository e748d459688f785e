//! A throw-away `redis-server` for tests.

use super::*;

/// A throw-away `redis-server` for tests: its own port and directory, killed on drop.
///
/// Fails loudly when `redis-server` is not installed (CI installs Debian's package), so Redis
/// tests never pass by skipping.
#[doc(hidden)]
pub struct TestRedis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
    extra: Vec<String>,
}

impl TestRedis {
    /// Starts a server without persistence (`--save '' --appendonly no`) in `dir`.
    pub fn start(dir: &std::path::Path) -> TestRedis {
        Self::start_with(dir, &["--save", "", "--appendonly", "no"])
    }

    /// Starts a server that survives its own crash: append-only file, fsync on every write.
    pub fn start_durable(dir: &std::path::Path) -> TestRedis {
        Self::start_with(
            dir,
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        )
    }

    /// Starts a server with extra arguments.
    pub fn start_with(dir: &std::path::Path, args: &[&str]) -> TestRedis {
        let mut r = TestRedis {
            port: Self::free_port(),
            dir: dir.to_path_buf(),
            child: None,
            extra: args.iter().map(|s| s.to_string()).collect(),
        };
        // The port was free a moment ago; another test may take it before redis-server binds
        // it. Then the server exits and a fresh port is tried.
        for _ in 0..10 {
            if r.try_start() {
                return r;
            }
            r.port = Self::free_port();
        }
        panic!("redis-server could not bind a free port in 10 attempts");
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"))
    }

    /// (Re)starts the server on the same port and directory, and waits until it answers.
    /// Retries while the port is taken (a bind failure exits redis-server at once).
    pub fn restart(&mut self) {
        for _ in 0..50 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server could not bind port {} again", self.port);
    }

    /// Starts redis-server on `self.port`: true once *this* process answers (checked by its
    /// `process_id`, so a server another test started on the same port is never mistaken for
    /// it), false when it exited (port taken).
    fn try_start(&mut self) -> bool {
        let mut child = std::process::Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (apt-get install redis-server); the Redis tests need a real server")
            });
        let pid = format!("process_id:{}", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let info = Client::open(format!("redis://127.0.0.1:{}/", self.port))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| ::redis::cmd("INFO").arg("server").query::<String>(&mut c));
            if info.is_ok_and(|i| i.lines().any(|l| l.trim() == pid)) {
                self.child = Some(child);
                return true;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server on port {} did not come up", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server (no shutdown save) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A storage configuration pointing at this server with `prefix`.
    pub fn config(&self, prefix: &str) -> crate::storage::settings::StorageConfig {
        crate::storage::settings::StorageConfig {
            storage_type: crate::storage::settings::StorageType::Redis,
            redis: RedisConfig {
                host: "127.0.0.1".to_string(),
                port: self.port,
                prefix: prefix.to_string(),
                ..RedisConfig::default()
            },
            ..Default::default()
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
