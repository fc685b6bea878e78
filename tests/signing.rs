//! Signed policy modules, black-box: `policy keygen` / `policy sign` / `policy check` through the
//! binary, and, once `policies.toml` lists trusted keys, a valid signature required of every module
//! on a file drop (reload), an upload (the `X-Policy-Signature` header) and a rollback. Each refusal
//! names its reason: a missing signature, a malformed one, an unknown key, a tampered module.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestApp, eventually};
use gpu_market::policy::wasm::{
    PolicyErrorKind, PolicyRuntime, PricingTenant, PrivateKey, Slot, signature_path,
};
use serde_json::Value;

const PRICING_FILE: &str = "pricing-demand.wasm";
const MODULES: [&str; 3] = [
    "pricing-demand.wasm",
    "booking-timeout-grace.wasm",
    "review-moderation-basic.wasm",
];
/// How long a watcher reload may take to show (debounce, compile, samples) on a loaded machine.
const RELOAD: Duration = Duration::from_secs(15);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn flat_module() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/pricing-flat.wasm")).unwrap()
}

fn shipped_module(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("policies").join(name)).unwrap()
}

/// Replaces a file the way a deploy script does: a temp file in the same directory, then a rename.
fn replace(path: &Path, bytes: &[u8]) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let tmp = path.with_file_name(format!(".{name}.deploy.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Lists `keys` as the trusted keys of the `policies.toml` in `dir`.
fn trust(dir: &Path, keys: &[&PrivateKey]) {
    let path = dir.join("policies.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = match text.find("\n[signing]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.public_key_line()))
        .collect();
    let signing = format!("\n[signing]\ntrusted_keys = [{}]\n", lines.join(", "));
    replace(&path, format!("{text}{signing}").as_bytes());
}

/// Writes the signature file of `dir/file` made with `key`.
fn sign_in_place(dir: &Path, file: &str, key: &PrivateKey) {
    let module = std::fs::read(dir.join(file)).unwrap();
    replace(
        &signature_path(&dir.join(file)),
        key.sign(&module).as_bytes(),
    );
}

/// A copy of the shipped policies whose modules are signed by `key`, with `key` trusted.
fn signed_policies(dir: &Path, key: &PrivateKey) {
    common::copy_shipped_policies(dir);
    for file in MODULES {
        sign_in_place(dir, file, key);
    }
    trust(dir, &[key]);
}

fn last_error(runtime: &PolicyRuntime) -> String {
    runtime.status(Slot::Pricing).last_error.unwrap_or_default()
}

fn serving_sha(runtime: &PolicyRuntime) -> Option<String> {
    runtime.status(Slot::Pricing).sha256
}

fn sha256_hex(bytes: &[u8]) -> String {
    gpu_market::policy::wasm::sha256_hex(bytes)
}

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-market"))
        .args(args)
        .output()
        .expect("the gpu-market binary runs")
}

// ---- the CLI ----------------------------------------------------------------------------------

fn keygen(out: &Path, name: &str) -> std::process::Output {
    run(&[
        "policy".as_ref(),
        "keygen".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--name".as_ref(),
        name.as_ref(),
    ])
}

#[test]
fn keygen_sign_and_check_round_trip_through_the_cli() {
    let keys = tempfile::tempdir().unwrap();
    let policies = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(policies.path());

    let made = keygen(keys.path(), "ops");
    assert!(made.status.success(), "{made:?}");
    let printed = String::from_utf8(made.stdout).unwrap();
    let line = printed
        .lines()
        .find_map(|l| l.strip_prefix("trusted_keys = "))
        .unwrap_or_else(|| panic!("keygen printed no trusted_keys line: {printed}"));
    let public_key = std::fs::read_to_string(keys.path().join("ops.pub")).unwrap();
    assert_eq!(line, format!("[\"{}\"]", public_key.trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.path().join("ops.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by others");
    }
    // The printed snippet pasted into policies.toml as it is.
    let toml = policies.path().join("policies.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n{printed}")).unwrap();

    let module = policies.path().join(PRICING_FILE);
    let check = || {
        run(&[
            "policy".as_ref(),
            "check".as_ref(),
            module.as_os_str(),
            "--slot".as_ref(),
            "pricing".as_ref(),
            "--policies".as_ref(),
            policies.path().as_os_str(),
        ])
    };
    let unsigned = check();
    let report = String::from_utf8_lossy(&unsigned.stdout);
    assert_eq!(unsigned.status.code(), Some(1), "{report}");
    assert!(report.contains("missing signature"), "{report}");

    let signed = run(&[
        "policy".as_ref(),
        "sign".as_ref(),
        module.as_os_str(),
        "--key".as_ref(),
        keys.path().join("ops.key").as_os_str(),
    ]);
    assert!(signed.status.success(), "{signed:?}");
    assert!(signature_path(&module).is_file());

    let passed = check();
    let report = String::from_utf8_lossy(&passed.stdout);
    assert!(passed.status.success(), "{report}");
    let key = PrivateKey::read(&keys.path().join("ops.key")).unwrap();
    assert!(
        report.contains(&format!("signed by trusted key {}", key.id())),
        "{report}"
    );

    // A second keygen under the same name never replaces the key.
    let again = keygen(keys.path(), "ops");
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        PrivateKey::read(&keys.path().join("ops.key")).unwrap().id(),
        key.id()
    );
}

// ---- file drop (reload) -----------------------------------------------------------------------

#[tokio::test]
async fn a_dropped_module_serves_only_with_a_valid_signature_by_a_trusted_key() {
    let key = PrivateKey::generate().unwrap();
    let stranger = PrivateKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    signed_policies(dir.path(), &key);
    let runtime = PolicyRuntime::start_unwatched(dir.path()).await.unwrap();
    for status in runtime.statuses() {
        assert!(status.sha256.is_some(), "signed modules serve: {status:?}");
    }
    let original = serving_sha(&runtime);

    let module = dir.path().join(PRICING_FILE);
    let signature = signature_path(&module);
    let flat = flat_module();
    let mut tampered = flat.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let cases: [(&str, Vec<u8>, Option<String>, String); 4] = [
        // The module changes and its old signature stays.
        (
            "tampered",
            tampered.clone(),
            Some(key.sign(&flat)),
            "was changed after it was signed".into(),
        ),
        ("missing", flat.clone(), None, "missing signature".into()),
        (
            "unknown key",
            flat.clone(),
            Some(stranger.sign(&flat)),
            format!("signed by unknown key {}", stranger.id()),
        ),
        (
            "malformed",
            flat.clone(),
            Some("gpu-market-signature-v1 key=nonsense".into()),
            "malformed signature".into(),
        ),
    ];
    for (case, bytes, sig, reason) in cases {
        match &sig {
            Some(sig) => replace(&signature, sig.as_bytes()),
            None => std::fs::remove_file(&signature).unwrap(),
        }
        replace(&module, &bytes);
        runtime.reload().await;
        let error = last_error(&runtime);
        assert!(error.contains(&reason), "{case}: {error}");
        assert_eq!(
            serving_sha(&runtime),
            original,
            "{case}: the previous version keeps serving"
        );
    }

    replace(&signature, key.sign(&flat).as_bytes());
    replace(&module, &flat);
    runtime.reload().await;
    assert_eq!(serving_sha(&runtime), Some(sha256_hex(&flat)));
    assert_eq!(runtime.status(Slot::Pricing).last_error, None);
}

#[tokio::test]
async fn with_trusted_keys_the_unsigned_shipped_modules_do_not_serve() {
    let key = PrivateKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    trust(dir.path(), &[&key]);
    let runtime = PolicyRuntime::start_unwatched(dir.path()).await.unwrap();
    for status in runtime.statuses() {
        assert_eq!(status.sha256, None, "{status:?}");
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains("missing signature"), "{error}");
    }
    // Simulation tenants load the same way.
    let err = PricingTenant::configured(dir.path()).err().unwrap();
    assert_eq!(err.kind(), PolicyErrorKind::BadRequest);
    assert!(err.to_string().contains("missing signature"), "{err}");
    sign_in_place(dir.path(), PRICING_FILE, &key);
    assert!(PricingTenant::configured(dir.path()).unwrap().is_some());
}

#[tokio::test]
async fn a_bad_trusted_key_rejects_the_whole_policies_toml() {
    let key = PrivateKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    signed_policies(dir.path(), &key);
    let runtime = PolicyRuntime::start_unwatched(dir.path()).await.unwrap();
    let before: Vec<Option<String>> = runtime.statuses().into_iter().map(|s| s.sha256).collect();

    let toml = dir.path().join("policies.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    replace(&toml, text.replace("ed25519:", "ed25519:AAAA").as_bytes());
    runtime.reload().await;
    for (status, sha) in runtime.statuses().into_iter().zip(before) {
        assert_eq!(status.sha256, sha, "every slot keeps its version");
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains("[signing] trusted_keys[0]"), "{error}");
    }
    // Starting on that file fails outright.
    let err = PolicyRuntime::start_unwatched(dir.path())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("trusted_keys"), "{err}");
}

// ---- rollback ---------------------------------------------------------------------------------

#[tokio::test]
async fn rollback_restores_the_signature_and_verifies_against_the_current_keys() {
    let key = PrivateKey::generate().unwrap();
    let next_key = PrivateKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    signed_policies(dir.path(), &key);
    let runtime = PolicyRuntime::start_unwatched(dir.path()).await.unwrap();
    let demand = shipped_module(PRICING_FILE);
    let module = dir.path().join(PRICING_FILE);
    let demand_signature = std::fs::read(signature_path(&module)).unwrap();
    let flat = flat_module();
    let flat_signature = key.sign(&flat).into_bytes();

    runtime
        .upload(Slot::Pricing, flat.clone(), Some(flat_signature.clone()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(signature_path(&module)).unwrap(),
        flat_signature
    );
    runtime.rollback(Slot::Pricing).await.unwrap();
    assert_eq!(serving_sha(&runtime), Some(sha256_hex(&demand)));
    assert_eq!(std::fs::read(&module).unwrap(), demand);
    assert_eq!(
        std::fs::read(signature_path(&module)).unwrap(),
        demand_signature,
        "the rolled-back version's signature is back beside it"
    );

    // Serving flat again, then the operator replaces the trusted key (the reload refuses flat, which
    // keeps serving): the kept version, signed by the old key only, may not come back.
    runtime
        .upload(Slot::Pricing, flat.clone(), Some(flat_signature))
        .await
        .unwrap();
    trust(dir.path(), &[&next_key]);
    runtime.reload().await;
    let err = runtime.rollback(Slot::Pricing).await.unwrap_err();
    assert_eq!(err.kind(), PolicyErrorKind::BadRequest);
    assert!(
        err.to_string()
            .contains(&format!("signed by unknown key {}", key.id())),
        "{err}"
    );
    assert_eq!(serving_sha(&runtime), Some(sha256_hex(&flat)));
    assert_eq!(std::fs::read(&module).unwrap(), flat);

    // Uploads take the new key only, although the serving version was accepted under the old one.
    let err = runtime
        .upload(Slot::Pricing, demand.clone(), Some(demand_signature))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown key"), "{err}");
    let resigned = next_key.sign(&demand).into_bytes();
    runtime
        .upload(Slot::Pricing, demand.clone(), Some(resigned))
        .await
        .unwrap();
    assert_eq!(serving_sha(&runtime), Some(sha256_hex(&demand)));
}

// ---- over HTTP --------------------------------------------------------------------------------

/// A server on a copy of the shipped policies, signed by `key` and trusting it.
async fn spawn_signed(key: &PrivateKey) -> TestApp {
    TestApp::spawn_with_shipped_policies(|config| {
        let dir = config.policies_dir.clone();
        for file in MODULES {
            sign_in_place(&dir, file, key);
        }
        trust(&dir, &[key]);
    })
    .await
}

async fn put_module(app: &TestApp, bytes: &[u8], signature: Option<&str>) -> common::Reply {
    let mut request = app
        .client
        .put(app.url("/v1/admin/policies/pricing"))
        .header("Content-Type", "application/wasm")
        .body(bytes.to_vec());
    if let Some(signature) = signature {
        request = request.header("X-Policy-Signature", signature);
    }
    app.send(request).await
}

async fn pricing_status(app: &TestApp) -> Value {
    let statuses = app.get("/v1/admin/policies").await.expect(200).clone();
    statuses
        .as_array()
        .and_then(|all| all.iter().find(|s| s["slot"] == "pricing").cloned())
        .unwrap_or_else(|| panic!("no pricing slot: {statuses}"))
}

#[tokio::test]
async fn an_upload_needs_a_valid_signature_header_and_keeps_it_beside_the_module() {
    let key = PrivateKey::generate().unwrap();
    let stranger = PrivateKey::generate().unwrap();
    let app = spawn_signed(&key).await;
    let dir = app.config.policies_dir.clone();
    let module = dir.join(PRICING_FILE);
    let original = pricing_status(&app).await["sha256"].clone();
    assert!(original.is_string(), "the signed shipped module serves");

    let flat = flat_module();
    let mut tampered = flat.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let good = key.sign(&flat);
    let stranger_signature = stranger.sign(&flat);
    let unknown = format!("signed by unknown key {}", stranger.id());
    let cases = [
        ("missing", &flat, None, "missing signature"),
        (
            "malformed",
            &flat,
            Some("gpu-market-signature-v1 ed25519=AAAA"),
            "malformed signature",
        ),
        (
            "unknown key",
            &flat,
            Some(stranger_signature.as_str()),
            unknown.as_str(),
        ),
        (
            "tampered",
            &tampered,
            Some(good.as_str()),
            "was changed after it was signed",
        ),
    ];
    for (case, bytes, signature, reason) in cases {
        let reply = put_module(&app, bytes, signature).await;
        reply.expect_error(400);
        let detail = reply.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{case}: {detail}");
        let status = pricing_status(&app).await;
        assert_eq!(status["sha256"], original, "{case}: {status}");
        let last_error = status["last_error"].as_str().unwrap_or_default();
        assert!(last_error.contains(reason), "{case}: {status}");
        assert_eq!(
            std::fs::read(&module).unwrap(),
            shipped_module(PRICING_FILE),
            "{case}: a refused upload leaves the directory alone"
        );
    }

    let status = put_module(&app, &flat, Some(&good))
        .await
        .expect(200)
        .clone();
    assert_eq!(status["sha256"], sha256_hex(&flat));
    assert_eq!(std::fs::read(&module).unwrap(), flat);
    assert_eq!(
        std::fs::read_to_string(signature_path(&module)).unwrap(),
        good
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_dropped_module_waits_for_its_signature_file() {
    let key = PrivateKey::generate().unwrap();
    let app = spawn_signed(&key).await;
    let module = app.config.policies_dir.join(PRICING_FILE);
    let original = pricing_status(&app).await["sha256"].clone();
    let flat = flat_module();

    // The module first, with the old module's signature still beside it.
    replace(&module, &flat);
    let status = eventually(RELOAD, "the unsigned drop to be refused", || async {
        let status = pricing_status(&app).await;
        let refused = status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("was changed after it was signed"));
        refused.then_some(status)
    })
    .await;
    assert_eq!(status["sha256"], original, "{status}");

    // Its signature arrives: that alone reloads the slot.
    replace(&signature_path(&module), key.sign(&flat).as_bytes());
    eventually(RELOAD, "the signed module to serve", || async {
        let status = pricing_status(&app).await;
        (status["sha256"] == sha256_hex(&flat)).then_some(())
    })
    .await;
    app.shutdown().await;
}

/// Shadows and canaries are modules like any other: with trusted keys, an unsigned or foreign-signed
/// candidate is refused with its reason, and a signed one loads.
#[tokio::test]
async fn shadow_and_canary_candidates_need_a_trusted_signature_too() {
    let (key, stranger) = (
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    signed_policies(dir.path(), &key);
    std::fs::write(dir.path().join("candidate.wasm"), flat_module()).unwrap();
    let toml = dir.path().join("policies.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    // [pricing.*] tables go before [signing], which `trust` keeps last.
    let at = text.find("\n[signing]").unwrap();
    let with_candidates = format!(
        "{}\n[pricing.shadow]\nfile = \"candidate.wasm\"\n[pricing.canary]\nfile = \"candidate.wasm\"\npercent = 10\n{}",
        &text[..at],
        &text[at..]
    );
    replace(&toml, with_candidates.as_bytes());
    let runtime = PolicyRuntime::start_unwatched(dir.path()).await.unwrap();
    let status = runtime.status(Slot::Pricing);
    assert!(status.sha256.is_some(), "the signed live module serves");
    for candidate in [status.shadow.unwrap(), status.canary.unwrap()] {
        assert_eq!(candidate.state, "not_loaded");
        let error = candidate.last_error.unwrap_or_default();
        assert!(error.contains("missing signature"), "{error}");
    }
    sign_in_place(dir.path(), "candidate.wasm", &stranger);
    runtime.reload().await;
    let status = runtime.status(Slot::Pricing);
    let error = status.shadow.unwrap().last_error.unwrap_or_default();
    assert!(error.contains("unknown key"), "{error}");
    sign_in_place(dir.path(), "candidate.wasm", &key);
    runtime.reload().await;
    let status = runtime.status(Slot::Pricing);
    for candidate in [status.shadow.unwrap(), status.canary.unwrap()] {
        assert_eq!(candidate.state, "running", "{candidate:?}");
        assert_eq!(
            candidate.sha256.as_deref(),
            Some(sha256_hex(&flat_module()).as_str())
        );
    }
}
