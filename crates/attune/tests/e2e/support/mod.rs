//! The real `attune` binary as child processes: start one, learn where it
//! serves, keep its log lines, stop it with SIGTERM, and never leave one behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to exit after SIGTERM: the drain's bound
/// (`limits.shutdown_grace`, 10 s by default) and some slack.
pub const EXIT_WITHIN: Duration = Duration::from_secs(15);

/// The `attune` binary with JSON logs and no inherited `RUST_LOG`.
pub fn attune() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_attune"));
    command
        .env_remove("RUST_LOG")
        .env("ATTUNE_TELEMETRY__LOG_FORMAT", "json")
        .stdin(Stdio::null());
    command
}

/// Waits for `child` to exit, failing the test after `within`.
pub fn wait_for_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "attune did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `attune serve`: killed when dropped, so a failing test leaves no
/// process behind.
pub struct Process {
    child: Child,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Spawns `command` (an `attune serve ...` with `--listen 127.0.0.1:0`) and
    /// returns once its JSON log says where it serves. Its stderr is read to the
    /// end on a thread of its own, so the child never blocks on a full pipe and
    /// every line stays readable with [`log`](Self::log).
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("the attune binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("attune is serving")
                    && let Some(tx) = address_tx.take()
                {
                    let _ = tx.send(json_field(&line, "address"));
                }
                lines.lock().expect("the log is not poisoned").push(line);
            }
        });
        let address = match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(address)) => address,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "attune did not say where it serves ({outcome:?}); its log:\n{}",
                    log.lock().expect("the log is not poisoned").join("\n")
                );
            }
        };
        Self {
            child,
            address,
            log,
        }
    }

    /// `host:port` it serves gRPC on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `http://host:port`, for a client or another process's settings.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The string field `key` of the first log line holding `message`, if it
    /// has logged one yet.
    pub fn logged_field(&self, message: &str, key: &str) -> Option<String> {
        self.log()
            .iter()
            .filter(|line| line.contains(message))
            .find_map(|line| json_field(line, key))
    }

    /// Every line it has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("the log is not poisoned").clone()
    }

    /// Sends SIGTERM and waits for a clean exit (status 0).
    pub fn terminate(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = wait_for_exit(&mut self.child, EXIT_WITHIN);
        assert!(status.success(), "attune exits 0 after SIGTERM: {status:?}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The string value of `"key":"..."` in one JSON log line.
fn json_field(line: &str, key: &str) -> Option<String> {
    let marker = format!("\"{key}\":\"");
    let start = line.find(&marker)? + marker.len();
    let end = start + line[start..].find('"')?;
    Some(line[start..end].to_owned())
}

/// The URL of a SQLite file in `dir`, created on first use.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("attune.db").display()
    )
}

/// A fresh PostgreSQL database on the server `ATTUNE_TEST_DATABASE_URL`
/// names, dropped with the returned value; for tests compiled only when it is
/// set (`cfg(attune_test_postgres)`).
pub fn postgres_database(name_hint: &str) -> attune_kit::db::TestDatabase {
    tokio::runtime::Runtime::new()
        .expect("a runtime starts")
        .block_on(attune_kit::db::fresh_test_database_on(
            attune_kit::db::Backend::Postgres,
            name_hint,
        ))
        .expect("the server accepts CREATE DATABASE")
        .expect("the test runs only when a PostgreSQL server is configured")
}

/// Every service as its own process and the gateway in front of them, as pods
/// run them: each service over `database_url`, calling those started before it
/// at `peers.<name>`; the gateway reaching each at `gateway.backends.<name>`.
/// `env` is set on every process.
pub struct EveryServiceApart {
    /// Each service's process by name, in the order of `attune::SERVICES`.
    pub pods: Vec<(&'static str, Process)>,
    pub gateway: Process,
}

impl EveryServiceApart {
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut pods = Vec::new();
        let mut peers: Vec<(String, String)> = Vec::new();
        for service in attune::SERVICES {
            let name = service.name();
            let pod = Process::start(
                attune()
                    .args(["serve", "--service", name, "--listen", "127.0.0.1:0"])
                    .args(["--database-url", database_url])
                    .envs(env.iter().copied())
                    .envs(peers.iter().map(|(variable, address)| (variable, address))),
            );
            peers.push((format!("ATTUNE_PEERS__{}", name.to_uppercase()), pod.url()));
            pods.push((name, pod));
        }
        let backends = peers
            .iter()
            .map(|(variable, address)| (variable.replace("PEERS", "GATEWAY__BACKENDS"), address));
        let gateway = Process::start(
            attune()
                .args(["serve", "--service", "gateway", "--listen", "127.0.0.1:0"])
                .args(["--database-url", database_url])
                .envs(env.iter().copied())
                .envs(backends),
        );
        Self { pods, gateway }
    }

    /// Stops the gateway, then the services in reverse order, each cleanly.
    pub fn terminate(self) {
        self.gateway.terminate();
        for (_, pod) in self.pods.into_iter().rev() {
            pod.terminate();
        }
    }
}
