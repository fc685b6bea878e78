//! API keys at rest: the config holds `sha256:<64 hex>`, never the key itself. Plain keys are still
//! accepted for compatibility and hashed as soon as the service starts; `gpu-market keys add` makes a
//! new random key, prints it once and writes only its hash into the config file.

use std::fmt;
use std::path::Path;

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Config, Role, Secret};

/// How a hashed key is written in the config.
pub const KEY_HASH_PREFIX: &str = "sha256:";
/// Random bytes in a generated key (256 bits).
const KEY_BYTES: usize = 32;
/// Generated keys start with this, so secret scanners and people can tell what they are.
const GENERATED_KEY_PREFIX: &str = "gm_";

/// The SHA-256 digest of an API key. Keys are long random strings, so a plain hash (no salt, no
/// stretching) is enough: there is no dictionary to try.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of a key as a caller presents it.
    pub fn of_key(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// A config value: `sha256:<64 hex digits>`, or a plain key (hashed here).
    pub fn from_config(value: &str) -> Result<Self, String> {
        let Some(hex) = value.strip_prefix(KEY_HASH_PREFIX) else {
            return Ok(Self::of_key(value));
        };
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(format!(
                "a hashed key is {KEY_HASH_PREFIX} followed by 64 hex digits"
            ));
        }
        let mut digest = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| "not hex".to_owned())?;
            digest[i] = u8::from_str_radix(text, 16)
                .map_err(|_| format!("{KEY_HASH_PREFIX} must be followed by hex digits"))?;
        }
        Ok(Self(digest))
    }

    /// Compares in constant time, so response timing says nothing about how much of a hash matched.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// `sha256:<hex>`, the form written to the config.
impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(KEY_HASH_PREFIX)?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

impl Config {
    /// Replaces every plain key by its hash, so the plaintext is kept nowhere past start-up; returns
    /// the principals whose keys were plain (the caller warns about them). Run after `validate`.
    pub fn hash_plain_keys(&mut self) -> Vec<String> {
        let mut plain = Vec::new();
        for key in &mut self.keys {
            if key.key.expose().starts_with(KEY_HASH_PREFIX) {
                continue;
            }
            key.key = Secret::new(KeyHash::of_key(key.key.expose()).to_string());
            plain.push(key.principal.clone());
        }
        plain
    }
}

/// A fresh random key: `gm_` and 64 hex digits from the operating system's generator.
pub fn generate_key() -> Result<String, String> {
    let mut bytes = [0u8; KEY_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|err| format!("the operating system's random generator failed: {err}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{GENERATED_KEY_PREFIX}{hex}"))
}

/// Appends a `[[keys]]` entry holding `hash` to the TOML file at `path` (created when missing),
/// leaving everything else in the file, comments included, as it was.
pub fn add_key_to_file(
    path: &Path,
    hash: &KeyHash,
    principal: &str,
    roles: &[Role],
) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let mut document: DocumentMut = text
        .parse()
        .map_err(|err| format!("{} is not valid TOML: {err}", path.display()))?;
    let mut role_names = Array::new();
    for role in roles {
        role_names.push(role.as_str());
    }
    let mut entry = Table::new();
    entry.insert("key", value(hash.to_string()));
    entry.insert("principal", value(principal));
    entry.insert("roles", value(role_names));
    match document
        .entry("keys")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
    {
        Item::ArrayOfTables(tables) => tables.push(entry),
        Item::Value(toml_edit::Value::Array(inline)) => {
            inline.push(entry.into_inline_table());
        }
        _ => {
            return Err(format!(
                "`keys` in {} is neither [[keys]] tables nor an array",
                path.display()
            ));
        }
    }
    write_replacing(path, &document.to_string())
}

/// Writes through a temporary file in the same directory and renames it over `path`, so a crash
/// never leaves half a config file.
fn write_replacing(path: &Path, text: &str) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, text).map_err(|err| format!("cannot write {}: {err}", temp.display()))?;
    if let Ok(metadata) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temp, metadata.permissions());
    }
    std::fs::rename(&temp, path).map_err(|err| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot replace {}: {err}", path.display())
    })
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Miner => "miner",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_and_plain_forms_agree() {
        let hash = KeyHash::of_key("k-1");
        let written = hash.to_string();
        assert!(written.starts_with(KEY_HASH_PREFIX));
        assert_eq!(KeyHash::from_config(&written).unwrap(), hash);
        assert_eq!(KeyHash::from_config("k-1").unwrap(), hash);
        assert!(hash.matches(&KeyHash::of_key("k-1")));
        assert!(!hash.matches(&KeyHash::of_key("k-2")));
        assert!(KeyHash::from_config("sha256:abc").is_err());
        assert!(KeyHash::from_config(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), GENERATED_KEY_PREFIX.len() + 2 * KEY_BYTES);
    }

    #[test]
    fn plain_keys_are_replaced_by_their_hash() {
        let mut config = Config::from_toml(
            "[[keys]]\nkey = \"plain-1\"\nprincipal = \"a\"\nroles = [\"client\"]\n",
        )
        .unwrap();
        assert_eq!(config.hash_plain_keys(), ["a"]);
        assert_eq!(
            config.keys[0].key.expose(),
            KeyHash::of_key("plain-1").to_string()
        );
        assert!(config.hash_plain_keys().is_empty(), "hashing is idempotent");
    }

    #[test]
    fn adding_a_key_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpu-market.toml");
        std::fs::write(
            &path,
            "# my settings\nlog = \"debug\"\n\n[database]\nurl = \"sqlite://x.db\"\n",
        )
        .unwrap();
        let hash = KeyHash::of_key("new");
        add_key_to_file(&path, &hash, "ops", &[Role::Admin, Role::Miner]).unwrap();
        add_key_to_file(&path, &KeyHash::of_key("other"), "bob", &[Role::Miner]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings\nlog = \"debug\""), "{text}");
        let config = Config::from_toml(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.log, "debug");
        assert_eq!(config.keys.len(), 2);
        assert_eq!(config.keys[0].key.expose(), hash.to_string());
        assert_eq!(config.keys[0].roles, [Role::Admin, Role::Miner]);
        assert_eq!(config.keys[1].principal, "bob");

        let missing = dir.path().join("new.toml");
        add_key_to_file(&missing, &hash, "ops", &[Role::Client]).unwrap();
        let config = Config::from_toml(&std::fs::read_to_string(&missing).unwrap()).unwrap();
        assert_eq!(config.keys.len(), 1);
    }
}
