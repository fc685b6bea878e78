//! A real `gpu-market serve` process on a port of its own, its output in a log file: for the tests that
//! need a process boundary (several replicas, SIGKILL, SIGTERM) rather than an in-process server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub base: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `gpu-market serve` in `dir` with `config` and `policies`, logging to `dir/{name}.log`
    /// (appended to, so a restarted server keeps the earlier run's lines).
    pub fn start(
        name: &str,
        dir: &Path,
        database_url: &str,
        config: &Path,
        policies: &Path,
    ) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("a bound port").port()
        };
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("the server's log file");
        let err = out.try_clone().expect("a second handle on the log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-market"))
            .current_dir(dir)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(database_url)
            .arg("--policies")
            .arg(policies)
            .env_remove("GPU_MARKET_DATABASE_URL")
            .env_remove("GPU_MARKET_BIND")
            .env_remove("GPU_MARKET_POLICIES_DIR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("the gpu-market binary starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let start = Instant::now();
        loop {
            if let Ok(response) = client.get(format!("{}/health", self.base)).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "server exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "server not healthy after 60 s: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Prints the servers' logs when the test fails.
pub struct LogsOnFailure(pub Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.0 {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("---- {} (last lines) ----", log.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
