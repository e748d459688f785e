//! The real binary: `localzure start` as a child process on ephemeral ports (learnt from its
//! `listening on` log lines: no fixed ports, no sleeps), its captured log, and how it stops
//! (SIGTERM/SIGINT asserting exit 0, SIGKILL, an exit of its own). When a test panics the log
//! is printed as the [`Binary`] drops, and a still-running child is killed.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_localzure");
/// How long a server may take to start or stop.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A `Command` for the binary with a clean `LOCALZURE_*` environment plus `vars`.
pub fn command(vars: &[(String, String)]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("LOCALZURE_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1");
    c.env("LOCALZURE_HOST", "127.0.0.1");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

// ----- log capture --------------------------------------------------------------------------

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    /// Readers that reached end of file (2 = both stdout and stderr closed).
    closed: usize,
}

/// The lines a child wrote, shared with the reader threads.
#[derive(Clone, Default)]
pub struct Logs {
    inner: Arc<(Mutex<LogState>, Condvar)>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if c2.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl Logs {
    pub fn spawn_reader(&self, stream: impl Read + Send + 'static, tag: &'static str) {
        let logs = self.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(stream);
            for line in reader.split(b'\n') {
                let Ok(line) = line else { break };
                let text = strip_ansi(&String::from_utf8_lossy(&line));
                let (m, cv) = &*logs.inner;
                m.lock().unwrap().lines.push(format!("{tag}{text}"));
                cv.notify_all();
            }
            let (m, cv) = &*logs.inner;
            m.lock().unwrap().closed += 1;
            cv.notify_all();
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().lines.clone()
    }

    /// Every line so far, joined.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }

    /// Waits until a line satisfies `pred` (returns it), or both streams close, or the deadline.
    pub fn wait_for(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + deadline;
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap();
        let mut seen = 0;
        loop {
            while seen < g.lines.len() {
                if pred(&g.lines[seen]) {
                    return Some(g.lines[seen].clone());
                }
                seen += 1;
            }
            let now = Instant::now();
            if g.closed >= 2 || now >= end {
                return None;
            }
            g = cv.wait_timeout(g, end - now).unwrap().0;
        }
    }

    /// Waits until both streams are closed (the child exited and its pipes drained).
    pub fn wait_closed(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap();
        while g.closed < 2 {
            let now = Instant::now();
            if now >= end {
                return;
            }
            g = cv.wait_timeout(g, end - now).unwrap().0;
        }
    }
}

// ----- the server ---------------------------------------------------------------------------

/// A running `localzure start`.
pub struct Binary {
    child: Option<Child>,
    /// The HTTP address (`127.0.0.1:PORT`).
    pub addr: String,
    pub base_url: String,
    pub logs: Logs,
}

/// A server that exited instead of reaching `listening on`.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub log: String,
}

/// Waits up to `deadline` for the child to exit (`None`: still running).
pub fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= end {
            return None;
        }
        // Polling the child's state (not synchronising on time): 10 ms granularity.
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Binary {
    /// Starts `localzure start ARGS` with `vars` on top of ephemeral HTTP and AMQP ports and
    /// INFO logs; `Err` when the process exits before listening.
    pub fn try_start(vars: &[(String, String)], args: &[&str]) -> Result<Binary, Exited> {
        let mut all: Vec<(String, String)> = vec![
            ("LOCALZURE_HTTP_PORT".into(), "0".into()),
            ("LOCALZURE_AMQP_PORT".into(), "0".into()),
            ("LOCALZURE_LOG".into(), "info".into()),
        ];
        all.extend(vars.iter().cloned());
        let mut child = command(&all)
            .arg("start")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn localzure");
        let logs = Logs::default();
        logs.spawn_reader(child.stdout.take().expect("stdout"), "[out] ");
        logs.spawn_reader(child.stderr.take().expect("stderr"), "");
        let line = logs.wait_for(START_DEADLINE, |l| l.contains("listening on http://"));
        let Some(line) = line else {
            // Exited (streams closed) or hung.
            let status = match wait_exit(&mut child, STOP_DEADLINE) {
                Some(s) => s,
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server neither listened nor exited within {START_DEADLINE:?}; log:\n{}",
                        logs.text()
                    );
                }
            };
            logs.wait_closed(STOP_DEADLINE);
            return Err(Exited {
                status,
                log: logs.text(),
            });
        };
        let addr = address_after(&line, "listening on http://");
        Ok(Binary {
            child: Some(child),
            base_url: format!("http://{addr}"),
            addr,
            logs,
        })
    }

    /// The AMQP address, from the `AMQP listening on amqp://ADDR` line (waited for).
    pub fn amqp_addr(&self) -> SocketAddr {
        let line = self
            .logs
            .wait_for(START_DEADLINE, |l| l.contains("listening on amqp://"))
            .unwrap_or_else(|| panic!("no AMQP port in the log:\n{}", self.logs.text()));
        address_after(&line, "listening on amqp://")
            .parse()
            .expect("AMQP socket address")
    }

    /// Waits until `n` receives are parked in a long poll on the server, read from the
    /// `localzure_parked_receives` gauge of `/metrics` (the in-process server reads
    /// `ServiceBusBackend::parked_receives` directly). Fails after 10 s.
    pub async fn wait_parked(&self, n: usize) {
        let client = reqwest::Client::new();
        let url = format!("{}/metrics", self.base_url);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = match client.get(&url).send().await {
                Ok(r) => (r.status().to_string(), r.text().await.unwrap_or_default()),
                Err(e) => (e.to_string(), String::new()),
            };
            let parked = body
                .lines()
                .find_map(|l| l.strip_prefix("localzure_parked_receives "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if parked >= n as f64 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} receive(s) never parked; /metrics: {status} {}",
                body.lines()
                    .filter(|l| l.contains("parked"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// Sends `sig` (`TERM`, `INT`), then waits for the exit (asserting code 0) and the end of
    /// the log.
    pub fn signal_and_wait(mut self, sig: &str) -> Logs {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{sig} failed");
        let status = wait_exit(&mut child, STOP_DEADLINE);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server did not exit within {STOP_DEADLINE:?} of SIG{sig}; log:\n{}",
                self.logs.text()
            );
        };
        self.logs.wait_closed(STOP_DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after SIG{sig}: {status}; log:\n{}",
            self.logs.text()
        );
        self.logs.clone()
    }

    /// Waits for an exit the server began on its own (e.g. `localzure stop`); asserts code 0.
    pub fn wait_exit_ok(mut self) -> Logs {
        let mut child = self.child.take().expect("running");
        let Some(status) = wait_exit(&mut child, STOP_DEADLINE) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not exit; log:\n{}", self.logs.text());
        };
        self.logs.wait_closed(STOP_DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "exit status {status}; log:\n{}",
            self.logs.text()
        );
        self.logs.clone()
    }

    /// SIGKILL: no final snapshot, no cleanup.
    pub fn kill(mut self) -> Logs {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait after SIGKILL");
        self.logs.wait_closed(STOP_DEADLINE);
        self.logs.clone()
    }
}

/// The `HOST:PORT` after `marker` in a log line.
fn address_after(line: &str, marker: &str) -> String {
    line.split(marker)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("address after '{marker}' in {line}"))
        .to_string()
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.logs.wait_closed(Duration::from_secs(2));
            eprintln!(
                "----- localzure server log ({}) -----\n{}\n----- end of server log -----",
                self.base_url,
                self.logs.text()
            );
        }
    }
}
