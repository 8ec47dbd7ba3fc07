//! PostgreSQL servers of one test, on their own ports in temporary directories, for tests that
//! stop the database under a running application (the machine's shared server on 5432 is never
//! stopped) or replicate it.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root its programs run as the
//! `postgres` OS user (`runuser`), and the directories are handed to that user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// The shared primary the tests use.
pub const PRIMARY: &str = "postgres://postgres@127.0.0.1:5432";

/// Whether the tests run as root (then PostgreSQL must be run as `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program` of the PostgreSQL binaries as the `postgres` user (directly when the tests
/// already run as someone else than root).
pub fn as_postgres(bin: &Path, program: &str) -> Command {
    let program = bin.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command`, panicking with its output when it fails.
pub fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory of the PostgreSQL programs of the shared server's major version:
/// `TASKMASTER_PG_BINDIR`, else Debian's `/usr/lib/postgresql/<major>/bin`.
pub async fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("TASKMASTER_PG_BINDIR") {
        return dir.into();
    }
    let mut primary = PgConnection::connect(&format!("{PRIMARY}/postgres"))
        .await
        .expect("the local PostgreSQL must be running");
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut primary)
        .await
        .unwrap();
    format!("/usr/lib/postgresql/{}/bin", version / 10_000).into()
}

/// Waits until `check` holds, at most `limit`; whether it did.
pub async fn until(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Gives `dir` to the `postgres` user when we are root (otherwise it is ours, and PostgreSQL
/// runs as us).
pub fn hand_to_postgres(dir: &Path) {
    if is_root() {
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres:postgres").arg(dir);
        run(chown, "chown a PostgreSQL directory");
    }
}

/// A server of its own on a free port in a temporary directory; stopped and removed on drop,
/// also when the test fails. [`PostgresServer::start`] makes a fresh one with `initdb`; a test
/// can also fill [`PostgresServer::data`] itself (a base backup) after [`PostgresServer::allocate`].
pub struct PostgresServer {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PostgresServer {
    /// A directory (named after `label`) and a port for a server, nothing started yet.
    pub async fn allocate(label: &str) -> Self {
        let bin = binaries().await;
        let dir = std::env::temp_dir().join(format!("{label}-{}", testkit::unique_token()));
        std::fs::create_dir(&dir).unwrap();
        hand_to_postgres(&dir);
        Self {
            dir,
            port: free_port(),
            bin,
        }
    }

    /// Initialises and starts a server; returns once it accepts connections.
    pub async fn start() -> Self {
        let server = Self::allocate("tm-postgres").await;
        let mut init = as_postgres(&server.bin, "initdb");
        init.arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(init, "initdb");
        let conf = server.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&server.settings("shared_buffers = 32MB\nmax_connections = 50\n"));
        std::fs::write(&conf, text).unwrap();
        server.resume().await;
        server
    }

    /// `postgresql.conf` lines that put the server on its port and socket directory, then
    /// `extra`.
    pub fn settings(&self, extra: &str) -> String {
        format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             fsync = off\ncluster_name = '{name}'\n{extra}",
            port = self.port,
            name = self.cluster_name(),
            dir = self.dir.display(),
        )
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The name it reports as `cluster_name` (a standby's `application_name` on its primary).
    pub fn cluster_name(&self) -> String {
        format!("tm-test-{}", self.port)
    }

    /// The directory that holds everything of this server.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL programs' directory.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub async fn resume(&self) {
        let mut start = as_postgres(&self.bin, "pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
        let url = self.url("postgres");
        let up = until(Duration::from_secs(30), async || {
            PgConnection::connect(&url).await.is_ok()
        })
        .await;
        assert!(up, "PostgreSQL on {} never took connections", self.port);
    }

    /// Stops the server: `fast` cuts every session and shuts down cleanly; `immediate` is a
    /// crash (no shutdown checkpoint, crash recovery on the next start), as when its machine
    /// dies.
    pub fn stop(&self, mode: &str) {
        let mut stop = as_postgres(&self.bin, "pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let mut stop = as_postgres(&self.bin, "pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
