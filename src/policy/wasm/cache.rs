//! [`ArtifactCache`]: the native code this host compiled from policy modules, kept on disk so that a
//! restart (or a rollback, or a reload back to a known version) loads an interpreter-based module in
//! milliseconds instead of compiling it again for seconds.
//!
//! A compiled artifact is native code that wasmtime maps executable without any further check, so the
//! cache only ever loads what this host wrote itself:
//! - each file holds an HMAC-SHA256 over its key and its bytes, under a secret the host generated on
//!   first use into a 0600 file of the cache directory; a file that fails it (planted, copied from
//!   another machine, truncated, corrupted) is removed and the module is compiled again;
//! - the key of an artifact is the module's sha256, the slot, the slot's budget (its engine's pool
//!   configuration) and the engine's [`precompile_compatibility_hash`](Engine::precompile_compatibility_hash)
//!   (wasmtime version, compiler and its settings), so an artifact is never offered to an engine that
//!   did not produce it;
//! - a module supplied precompiled from outside is never accepted: the policies directory and uploads
//!   hold `.wasm` sources, which are compiled here (the cache directory may not lie inside the
//!   policies directory).
//!
//! The cache is bounded: after each store the least recently used artifacts (by modification time,
//! refreshed on every hit) are removed until the total is within `max_bytes`.
//! A cached artifact only skips compilation: every other load check (imports, contract, budget,
//! samples) still runs on it.

use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::budget;
use super::error::PolicyError;
use super::module::sha256_hex;
use super::slot::Slot;

type HmacSha256 = Hmac<Sha256>;

/// The secret the artifacts are authenticated with.
const KEY_FILE: &str = "artifact-mac.key";
const KEY_BYTES: usize = 32;
const MAC_BYTES: usize = 32;
const ARTIFACT_EXTENSION: &str = "cwasm";

/// Why an artifact was not loaded from the cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// Not compiled by this host yet (or evicted).
    Absent,
    /// Present but not loadable; removed. The reason is logged.
    Rejected(String),
}

/// A directory of artifacts compiled by this host, authenticated with the host's own key.
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Keyed with the host's secret; cloned for each artifact.
    mac: HmacSha256,
}

impl ArtifactCache {
    /// Opens (creating it, mode 0700) the cache in `dir` with its key (generated on first use).
    /// Refuses a key file that others could read or that another user owns: whoever knows the key
    /// can make the host run native code of their choosing.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, PolicyError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| PolicyError::io("creating", dir, e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| PolicyError::io("opening", dir, e))?;
        let key = load_or_create_key(&dir)?;
        let mac = HmacSha256::new_from_slice(&key)
            .map_err(|e| PolicyError::Cache(format!("the key: {e}")))?;
        Ok(Self {
            dir,
            max_bytes,
            mac,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the artifact of `module_sha256` compiled for `slot`'s engine lives.
    pub fn path(&self, engine: &Engine, slot: Slot, module_sha256: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.{ARTIFACT_EXTENSION}",
            artifact_key(engine, slot, module_sha256)
        ))
    }

    /// The artifact of `module_sha256` for `slot`, if this host compiled and stored it.
    pub fn load(
        &self,
        engine: &Engine,
        slot: Slot,
        module_sha256: &str,
    ) -> Result<Component, Miss> {
        let path = self.path(engine, slot, module_sha256);
        let contents = match std::fs::read(&path) {
            Ok(contents) => contents,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(self.reject(&path, format!("unreadable: {e}"))),
        };
        let Some((mac, artifact)) = contents.split_at_checked(MAC_BYTES) else {
            return Err(self.reject(&path, "shorter than its MAC".into()));
        };
        if self.mac(&path, artifact).verify_slice(mac).is_err() {
            return Err(self.reject(
                &path,
                "its MAC does not match: not written by this host".into(),
            ));
        }
        // SAFETY: `Component::deserialize` trusts its input to be an artifact that wasmtime produced
        // with a compatible engine: it maps the code executable without validating it. These bytes
        // were authenticated just above with the host's secret key (0600, never leaves the host),
        // over the artifact's key (module sha256, slot, budget, engine compatibility hash) and its
        // contents, so they are exactly what `store` wrote after this host compiled the module for
        // this engine configuration. They are loaded from the same buffer the MAC was checked on
        // (`deserialize_file` would reopen the path, and the file could change between the check
        // and the load). wasmtime additionally refuses an artifact of another version or settings.
        let component = unsafe { Component::deserialize(engine, artifact) };
        match component {
            Ok(component) => {
                // The modification time orders eviction: a hit makes the artifact recent.
                if let Ok(file) = File::options().write(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Ok(component)
            }
            Err(e) => Err(self.reject(&path, format!("wasmtime refused it: {e:#}"))),
        }
    }

    /// Writes the artifact of a module this host just compiled (temp file + rename: a reader sees
    /// the whole file or none), then evicts the least recently used artifacts beyond the bound.
    pub fn store(
        &self,
        engine: &Engine,
        slot: Slot,
        module_sha256: &str,
        component: &Component,
    ) -> Result<(), PolicyError> {
        let artifact = component
            .serialize()
            .map_err(|e| PolicyError::Internal(format!("serializing a compiled module: {e:#}")))?;
        if (artifact.len() + MAC_BYTES) as u64 > self.max_bytes {
            return Ok(());
        }
        let path = self.path(engine, slot, module_sha256);
        let mac = self.mac(&path, &artifact).finalize().into_bytes();
        let tmp = temp_path(&path);
        write_private(&tmp, &[&mac, &artifact])?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PolicyError::io("renaming into", &path, e)
        })?;
        self.evict(&path)
    }

    /// The MAC of an artifact stored at `path`: over the file name (the artifact's key) and bytes.
    fn mac(&self, path: &Path, artifact: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or(b"");
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name);
        mac.update(artifact);
        mac
    }

    fn reject(&self, path: &Path, reason: String) -> Miss {
        tracing::warn!(path = %path.display(), "compiled policy artifact rejected and removed, the module is compiled again: {reason}");
        let _ = std::fs::remove_file(path);
        Miss::Rejected(reason)
    }

    /// Removes the least recently used artifacts, never `newest` (just stored), until the total size
    /// is within the bound.
    fn evict(&self, newest: &Path) -> Result<(), PolicyError> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| PolicyError::io("listing", &self.dir, e))?;
        let mut artifacts: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.path().extension().and_then(|e| e.to_str()) == Some(ARTIFACT_EXTENSION)
            })
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), entry.path()))
            })
            .collect();
        artifacts.sort();
        let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
        for (_, len, path) in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if path == newest {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "compiled policy artifact evicted (cache bound)");
                    total -= len;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => total -= len,
                Err(e) => return Err(PolicyError::io("evicting", &path, e)),
            }
        }
        Ok(())
    }
}

/// The cache key of a module compiled for `slot`'s engine.
fn artifact_key(engine: &Engine, slot: Slot, module_sha256: &str) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.write(slot.interface().as_bytes());
    hasher.write(format!("{:?}", budget(slot)).as_bytes());
    hasher.write(module_sha256.as_bytes());
    sha256_hex(&hasher.0.finalize())
}

/// Feeds [`std::hash::Hash`] into SHA-256: unlike `DefaultHasher`, stable and collision resistant.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        // Length-prefixed, so that consecutive writes cannot be confused with one.
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut nonce = [0u8; 8];
    // A collision of two writers only costs one of them its rename.
    let _ = OsRng.try_fill_bytes(&mut nonce);
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ))
}

/// Creates `path` readable by this user only, writes `parts` and syncs.
fn write_private(path: &Path, parts: &[&[u8]]) -> Result<(), PolicyError> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PolicyError::io("creating", path, e))?;
    parts
        .iter()
        .try_for_each(|part| out.write_all(part))
        .and_then(|()| out.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            PolicyError::io("writing", path, e)
        })
}

/// Reads the cache's key, or generates one. Publishing with a hard link (which fails if the name
/// exists) means two processes starting at once agree on one key and never read a partial file.
fn load_or_create_key(dir: &Path) -> Result<[u8; KEY_BYTES], PolicyError> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        let mut key = [0u8; KEY_BYTES];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| PolicyError::Cache(format!("no randomness for the key: {e}")))?;
        let tmp = temp_path(&path);
        write_private(&tmp, &[&key])?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(PolicyError::io("creating", &path, e)),
        }
    }
    read_key(&path)
}

fn read_key(path: &Path) -> Result<[u8; KEY_BYTES], PolicyError> {
    let mut file = File::open(path).map_err(|e| PolicyError::io("opening", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| PolicyError::io("inspecting", path, e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(PolicyError::Cache(format!(
            "{} must belong to this user (uid {me}) and be readable by it alone (mode 0600); \
             remove it and the host generates a new one",
            path.display()
        )));
    }
    let mut key = [0u8; KEY_BYTES];
    let mut rest = Vec::new();
    file.read_exact(&mut key)
        .and_then(|()| file.read_to_end(&mut rest))
        .map_err(|e| PolicyError::io("reading", path, e))?;
    if !rest.is_empty() {
        return Err(PolicyError::Cache(format!(
            "{} is not a {KEY_BYTES}-byte key",
            path.display()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::wasm::engine::engine;

    fn compiled(file: &str) -> (String, Component) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(file);
        let bytes = std::fs::read(&path).expect("a shipped policy module");
        let component =
            Component::new(engine(Slot::Pricing).unwrap(), &bytes).expect("it compiles");
        (sha256_hex(&bytes), component)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_artifact_this_host_stored_loads_and_only_this_user_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("cache"), 64 << 20).unwrap();
        let engine = engine(Slot::Pricing).unwrap();
        let (sha, component) = compiled("pricing-demand.wasm");
        assert_eq!(
            cache.load(engine, Slot::Pricing, &sha).err(),
            Some(Miss::Absent)
        );
        cache
            .store(engine, Slot::Pricing, &sha, &component)
            .unwrap();
        let loaded = cache
            .load(engine, Slot::Pricing, &sha)
            .expect("a cache hit");
        assert_eq!(loaded.serialize().unwrap(), component.serialize().unwrap());
        assert_eq!(mode(cache.dir()), 0o700);
        assert_eq!(mode(&cache.dir().join(KEY_FILE)), 0o600);
        assert_eq!(mode(&cache.path(engine, Slot::Pricing, &sha)), 0o600);
        // Another slot's engine is another key: never offered this artifact.
        let timeout = engine_for(Slot::BookingTimeout);
        assert_eq!(
            cache.load(timeout, Slot::BookingTimeout, &sha).err(),
            Some(Miss::Absent)
        );
        // The same directory opened again (a restart) keeps its key and its artifacts.
        let reopened = ArtifactCache::open(cache.dir(), 64 << 20).unwrap();
        assert!(reopened.load(engine, Slot::Pricing, &sha).is_ok());
    }

    fn engine_for(slot: Slot) -> &'static Engine {
        engine(slot).unwrap()
    }

    #[test]
    fn a_tampered_or_planted_artifact_is_rejected_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("ours"), 64 << 20).unwrap();
        let elsewhere = ArtifactCache::open(&dir.path().join("theirs"), 64 << 20).unwrap();
        let engine = engine_for(Slot::Pricing);
        let (sha, component) = compiled("pricing-demand.wasm");
        let path = cache.path(engine, Slot::Pricing, &sha);

        // One flipped byte of code.
        cache
            .store(engine, Slot::Pricing, &sha, &component)
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            cache.load(engine, Slot::Pricing, &sha),
            Err(Miss::Rejected(reason)) if reason.contains("MAC")
        ));
        assert!(!path.exists(), "the rejected file is removed");

        // A genuine wasmtime artifact of the same module, written by another host (another key).
        elsewhere
            .store(engine, Slot::Pricing, &sha, &component)
            .unwrap();
        std::fs::copy(elsewhere.path(engine, Slot::Pricing, &sha), &path).unwrap();
        assert!(matches!(
            cache.load(engine, Slot::Pricing, &sha),
            Err(Miss::Rejected(reason)) if reason.contains("not written by this host")
        ));

        // A bare artifact without a MAC, and a file too short to hold one.
        std::fs::write(&path, component.serialize().unwrap()).unwrap();
        assert!(matches!(
            cache.load(engine, Slot::Pricing, &sha),
            Err(Miss::Rejected(_))
        ));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            cache.load(engine, Slot::Pricing, &sha),
            Err(Miss::Rejected(_))
        ));

        // Our own artifact renamed to another module's key does not pass either.
        let (other_sha, _) = compiled("pricing-scarcity.wasm");
        cache
            .store(engine, Slot::Pricing, &sha, &component)
            .unwrap();
        std::fs::rename(&path, cache.path(engine, Slot::Pricing, &other_sha)).unwrap();
        assert!(matches!(
            cache.load(engine, Slot::Pricing, &other_sha),
            Err(Miss::Rejected(_))
        ));
    }

    #[test]
    fn the_least_recently_used_artifacts_go_beyond_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_for(Slot::Pricing);
        let modules = ["pricing-demand.wasm", "pricing-scarcity.wasm"].map(compiled);
        let sizes = modules
            .each_ref()
            .map(|(_, c)| c.serialize().unwrap().len() as u64);
        // Room for either artifact but not both.
        let bound = sizes[0].max(sizes[1]) + MAC_BYTES as u64;
        let cache = ArtifactCache::open(&dir.path().join("cache"), bound).unwrap();
        let [(first, a), (second, b)] = &modules;
        cache.store(engine, Slot::Pricing, first, a).unwrap();
        cache.store(engine, Slot::Pricing, second, b).unwrap();
        assert_eq!(
            cache.load(engine, Slot::Pricing, first).err(),
            Some(Miss::Absent)
        );
        assert!(cache.load(engine, Slot::Pricing, second).is_ok());

        // An artifact larger than the whole bound is not stored at all.
        let tiny = ArtifactCache::open(&dir.path().join("tiny"), 1024).unwrap();
        tiny.store(engine, Slot::Pricing, first, a).unwrap();
        assert_eq!(
            tiny.load(engine, Slot::Pricing, first).err(),
            Some(Miss::Absent)
        );
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        ArtifactCache::open(&cache_dir, 1 << 20).unwrap();
        let key = cache_dir.join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = ArtifactCache::open(&cache_dir, 1 << 20).err().unwrap();
        assert!(refused.to_string().contains("mode 0600"), "{refused}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key, b"too short").unwrap();
        assert!(ArtifactCache::open(&cache_dir, 1 << 20).is_err());
    }
}
