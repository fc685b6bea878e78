//! Issue 12, keys done right: `gpu-market keys add` prints a new key once and stores only its hash;
//! hashed and (for compatibility) plain keys authenticate; no key ever reaches the logs, even at
//! trace level.

mod common;

use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

fn sha256_form(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn keys_add(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gpu-market"))
        .arg("keys")
        .arg("add")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("gpu-market keys add runs")
}

#[tokio::test]
async fn keys_add_writes_a_hash_and_the_printed_key_works() {
    install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("market.toml");
    std::fs::write(
        &config,
        "# ops settings\nlog = \"info\"\n\n[booking]\nmax_extensions = 2\n",
    )
    .unwrap();

    let output = keys_add(&config, &["--role", "admin", "--principal", "ops"]);
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(key.len() >= 64, "a long random key: {key}");
    let output = keys_add(&config, &["--role", "client", "--principal", "alice"]);
    assert!(output.status.success(), "{output:?}");
    let alice = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_ne!(key, alice);

    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# ops settings\nlog = \"info\""), "{text}");
    assert!(text.contains("max_extensions = 2"), "{text}");
    assert!(text.contains(&sha256_form(&key)), "{text}");
    assert!(!text.contains(&key), "the key itself is not stored");

    let bad = keys_add(&config, &["--role", "root", "--principal", "x"]);
    assert!(!bad.status.success());

    let server = ServerProcess::start(
        dir.path(),
        database.url(),
        &["--config", config.to_str().unwrap()],
        &[],
    )
    .await;
    let client = reqwest::Client::new();
    let admin = client
        .get(format!("{}/v1/admin/reviews", server.base()))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 200);
    let forbidden = client
        .get(format!("{}/v1/admin/reviews", server.base()))
        .header("X-Api-Key", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    let wrong = client
        .get(format!("{}/v1/admin/reviews", server.base()))
        .header("X-Api-Key", sha256_form(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401, "the hash is not a key");
}

#[tokio::test]
async fn keys_never_reach_the_logs_even_at_trace_level() {
    const PLAIN: &str = "plain-key-7f3a9c1e5b";
    const HASHED: &str = "hashed-key-2d8e6f4a0c";
    const INVALID: &str = "invalid-key-9b1d3f5e7a";
    install_drivers();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = format!(
        r#"[{{key="{PLAIN}", principal="alice", roles=["client"]}}, {{key="{}", principal="bob", roles=["miner"]}}]"#,
        sha256_form(HASHED)
    );
    let mut server = ServerProcess::start(
        dir.path(),
        database.url(),
        &[],
        &[("GPU_MARKET_KEYS", keys.as_str()), ("RUST_LOG", "trace")],
    )
    .await;
    let client = reqwest::Client::new();
    let base = server.base();
    let register = client
        .post(format!("{base}/v1/marketplace/gpu/register"))
        .header("X-Api-Key", HASHED)
        .json(
            &serde_json::json!({ "gpu": { "name": "T4", "memory_gb": 16, "price_per_hour": 0.2 } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(register.status().as_u16(), 201);
    let gpu: serde_json::Value = register.json().await.unwrap();
    let gpu = gpu["gpu_id"].as_str().unwrap().to_owned();
    let book = client
        .post(format!("{base}/v1/marketplace/gpu/{gpu}/book"))
        .header("X-Api-Key", PLAIN)
        .json(&serde_json::json!({ "duration_hours": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(book.status().as_u16(), 201);
    let orders = client
        .get(format!("{base}/v1/marketplace/orders"))
        .header("X-Api-Key", PLAIN)
        .send()
        .await
        .unwrap();
    assert_eq!(orders.status().as_u16(), 200);
    for _ in 0..2 {
        let invalid = client
            .get(format!("{base}/v1/marketplace/orders"))
            .header("X-Api-Key", INVALID)
            .send()
            .await
            .unwrap();
        assert_eq!(invalid.status().as_u16(), 401);
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success());

    let log = server.log_text();
    assert!(
        log.contains("TRACE") && log.len() > 10_000,
        "trace logging was on"
    );
    assert!(log.contains("plain text"), "a warning about the plain key");
    for secret in [PLAIN, HASHED, INVALID] {
        assert!(
            !log.contains(secret),
            "{secret} appears in the log:\n{}",
            log.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn keys_hash_prints_the_config_form_of_a_plain_key() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-market"))
        .args(["keys", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gpu-market keys hash runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alice-key-1111\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        sha256_form("alice-key-1111")
    );
}
