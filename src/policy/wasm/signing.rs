//! Signed policy modules: ed25519 signing keys, the signature file beside a module, and the trusted
//! public keys `policies.toml` lists (`[signing] trusted_keys = ["ed25519:<base64>", ...]`).
//!
//! With no trusted key, signatures are not looked at. With one or more, every module that would serve
//! (file drop, upload, rollback, simulation tenant, `policy check`, shadow and canary candidates) must
//! come with a signature by one of them; [`TrustedKeys::verify`] is the one place that decides, and
//! the candidate checks (`checks.rs`) call it before compiling anything. There is deliberately no
//! setting that accepts an unsigned module while keys are configured.
//!
//! What is signed: the module's SHA-256 (the same digest the admin API shows as the version), prefixed
//! by [`SIGNED_CONTEXT`]. Signing the digest rather than the bytes lets the signature file name the
//! digest it covers, so a changed module is reported as such instead of as an opaque "bad signature",
//! and verification costs one SHA-256 pass however large the module; the context prefix keeps a
//! signature made with the same key for anything else from ever verifying as a module signature.
//!
//! The signature file, `<module file>.sig`, is one line (so it also fits an HTTP header):
//!
//! ```text
//! gpu-market-signature-v1 key=<key id> sha256=<hex> ed25519=<base64 signature>
//! ```
//!
//! A key id is the first 8 bytes of the SHA-256 of the public key, in hex. Private keys are PKCS#8
//! PEM files (`openssl genpkey -algorithm ed25519` makes compatible ones).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::error::PolicyError;

/// The signature file of `module.wasm` is `module.wasm.sig`.
pub const SIGNATURE_SUFFIX: &str = ".sig";
/// The upload route's header carrying the signature file's line.
pub const SIGNATURE_HEADER: &str = "x-policy-signature";
/// The first word of a signature file: its format and version.
const SIGNATURE_TAG: &str = "gpu-market-signature-v1";
const PUBLIC_KEY_PREFIX: &str = "ed25519:";
/// What an ed25519 signature of a module covers, before the module's SHA-256.
pub const SIGNED_CONTEXT: &[u8] = b"gpu-market policy module v1\0";
/// A signature line is about 200 bytes; anything much longer is not one (and is not read further).
const MAX_SIGNATURE_BYTES: usize = 1024;

/// The short fingerprint naming a public key in signature files and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    fn parse(text: &str) -> Option<Self> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 8];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A public key as `policies.toml` lists it and `policy keygen` prints it: `ed25519:<base64>`.
pub fn public_key_line(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(key.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedKey {
    id: KeyId,
    key: VerifyingKey,
}

/// The public keys whose signatures `policies.toml` accepts. Empty: signing is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<TrustedKey>);

/// How a module passed [`TrustedKeys::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// No trusted key is configured: signatures are not required (nor looked at).
    NotRequired,
    /// A valid signature by the trusted key with this id.
    SignedBy(KeyId),
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRequired => write!(f, "not required: policies.toml lists no trusted keys"),
            Self::SignedBy(id) => write!(f, "signed by trusted key {id}"),
        }
    }
}

impl TrustedKeys {
    /// Parses `policies.toml`'s `trusted_keys` list. Any line that is not an ed25519 public key, or a
    /// key listed twice, rejects the whole list: a typo must not quietly leave a key out.
    pub fn parse(lines: &[String]) -> Result<Self, String> {
        let mut keys: Vec<TrustedKey> = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let key = parse_public_key(line.trim())
                .map_err(|e| format!("trusted_keys[{i}] {line:?}: {e}"))?;
            let id = KeyId::of(&key);
            if keys.iter().any(|k| k.id == id) {
                return Err(format!("trusted_keys[{i}]: key {id} is listed twice"));
            }
            keys.push(TrustedKey { id, key });
        }
        Ok(Self(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids of the trusted keys, for messages.
    fn ids(&self) -> String {
        let ids: Vec<String> = self.0.iter().map(|k| k.id.to_string()).collect();
        ids.join(", ")
    }

    /// Decides whether the module `file_name` with these `bytes` may serve, given the content of its
    /// signature file (None: there is none). Every path that puts a module in service calls this
    /// (through the candidate checks). The error names the reason: a missing signature, a malformed
    /// one, one by an unknown key, or one that does not verify (the module or the signature was
    /// changed after signing).
    pub fn verify(
        &self,
        file_name: &str,
        bytes: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<Verified, String> {
        if self.is_empty() {
            return Ok(Verified::NotRequired);
        }
        let Some(signature) = signature else {
            return Err(format!(
                "missing signature: policies.toml lists trusted keys, so {file_name} needs a \
                 signature ({file_name}{SIGNATURE_SUFFIX}, or the {SIGNATURE_HEADER} header of an \
                 upload) by one of them; make one with `gpu-market policy sign`"
            ));
        };
        let signature = ModuleSignature::parse(signature)
            .map_err(|e| format!("malformed signature for {file_name}: {e}"))?;
        let Some(trusted) = self.0.iter().find(|k| k.id == signature.key_id) else {
            return Err(format!(
                "{file_name} is signed by unknown key {}; trusted keys: {}",
                signature.key_id,
                self.ids()
            ));
        };
        let digest = ModuleDigest::of(bytes);
        let sha256 = digest.hex();
        if signature.sha256 != sha256 {
            return Err(format!(
                "bad signature: {file_name} was changed after it was signed (its sha256 is {sha256}, \
                 the signature covers {})",
                signature.sha256
            ));
        }
        trusted
            .key
            .verify_strict(&digest.signed_message(), &signature.signature)
            .map_err(|_| {
                format!(
                    "bad signature: the signature of {file_name} does not verify with key {} \
                     (the signature file was altered or made with another key)",
                    trusted.id
                )
            })?;
        Ok(Verified::SignedBy(trusted.id))
    }
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let encoded = text
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or_else(|| format!("expected {PUBLIC_KEY_PREFIX}<base64 public key>"))?;
    let raw = BASE64
        .decode(encoded)
        .map_err(|e| format!("not base64: {e}"))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|raw: Vec<u8>| format!("an ed25519 public key is 32 bytes, not {}", raw.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid ed25519 public key".to_owned())
}

/// A module's SHA-256, computed once per verification (a module may be tens of MB).
struct ModuleDigest([u8; 32]);

impl ModuleDigest {
    fn of(module: &[u8]) -> Self {
        Self(Sha256::digest(module).into())
    }

    /// As the admin API and the signature file show it.
    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The message an ed25519 signature of the module covers.
    fn signed_message(&self) -> Vec<u8> {
        [SIGNED_CONTEXT, &self.0].concat()
    }
}

/// One parsed signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModuleSignature {
    key_id: KeyId,
    sha256: String,
    signature: Signature,
}

impl ModuleSignature {
    fn parse(raw: &[u8]) -> Result<Self, String> {
        if raw.len() > MAX_SIGNATURE_BYTES {
            return Err(format!(
                "{} bytes; a signature is one line of about 200",
                raw.len()
            ));
        }
        let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8 text".to_owned())?;
        let mut words = text.split_whitespace();
        if words.next() != Some(SIGNATURE_TAG) {
            return Err(format!("expected a line starting with {SIGNATURE_TAG}"));
        }
        let (mut key_id, mut sha256, mut signature) = (None, None, None);
        for word in words {
            let (name, value) = word
                .split_once('=')
                .ok_or_else(|| format!("expected name=value, found {word:?}"))?;
            let field = match name {
                "key" => &mut key_id,
                "sha256" => &mut sha256,
                "ed25519" => &mut signature,
                other => return Err(format!("unknown field {other:?}")),
            };
            if field.replace(value).is_some() {
                return Err(format!("{name} given twice"));
            }
        }
        let key_id = key_id
            .and_then(KeyId::parse)
            .ok_or("key= must be a 16-digit hex key id")?;
        let sha256 = sha256
            .filter(|s| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or("sha256= must be 64 lowercase hex digits")?
            .to_owned();
        let signature = signature
            .and_then(|s| BASE64.decode(s).ok())
            .and_then(|s| Signature::from_slice(&s).ok())
            .ok_or("ed25519= must be a base64 ed25519 signature (64 bytes)")?;
        Ok(Self {
            key_id,
            sha256,
            signature,
        })
    }

    fn line(&self) -> String {
        format!(
            "{SIGNATURE_TAG} key={} sha256={} ed25519={}",
            self.key_id,
            self.sha256,
            BASE64.encode(self.signature.to_bytes())
        )
    }
}

/// The signature file beside `module`: `module` with [`SIGNATURE_SUFFIX`] appended.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut path = module.as_os_str().to_owned();
    path.push(SIGNATURE_SUFFIX);
    PathBuf::from(path)
}

/// Reads the signature file beside `module`; None when there is none. At most a little more than a
/// signature is read, so a huge file there cannot cost memory (it is then reported as malformed).
pub fn read_signature_beside(module: &Path) -> Result<Option<Vec<u8>>, PolicyError> {
    use std::io::Read as _;
    let path = signature_path(module);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PolicyError::io("opening", path, e)),
    };
    let mut content = Vec::new();
    file.take(MAX_SIGNATURE_BYTES as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| PolicyError::io("reading", path, e))?;
    Ok(Some(content))
}

/// A private signing key, as `policy keygen` writes it and `policy sign` reads it.
pub struct PrivateKey(SigningKey);

impl PrivateKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<Self, PolicyError> {
        let mut seed = [0u8; 32];
        OsRng.try_fill_bytes(&mut seed).map_err(|e| {
            PolicyError::Internal(format!(
                "the operating system's random generator failed: {e}"
            ))
        })?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads a PKCS#8 PEM private key file.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let pem = std::fs::read(path).map_err(|e| PolicyError::io("reading", path, e))?;
        std::str::from_utf8(&pem)
            .map_err(|e| e.to_string())
            .and_then(|pem| SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string()))
            .map(Self)
            .map_err(|e| PolicyError::Key {
                path: path.to_owned(),
                reason: format!("not an ed25519 private key in PKCS#8 PEM form: {e}"),
            })
    }

    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0.verifying_key())
    }

    /// The line to list in `policies.toml`'s `trusted_keys`.
    pub fn public_key_line(&self) -> String {
        public_key_line(&self.0.verifying_key())
    }

    /// The signature file's line for a module with these bytes.
    pub fn sign(&self, module: &[u8]) -> String {
        use ed25519_dalek::Signer as _;
        let digest = ModuleDigest::of(module);
        ModuleSignature {
            key_id: self.id(),
            sha256: digest.hex(),
            signature: self.0.sign(&digest.signed_message()),
        }
        .line()
    }

    /// Writes the key to a new file readable by its owner only; an existing file is never replaced
    /// (it may be the only copy of another key).
    pub fn write_new(&self, path: &Path) -> Result<(), PolicyError> {
        let pem = self.0.to_pkcs8_pem(LineEnding::LF).map_err(|e| {
            PolicyError::Internal(format!("encoding the private key as PKCS#8: {e}"))
        })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| PolicyError::io("creating", path, e))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| PolicyError::io("writing", path, e))
    }
}

/// What `policy keygen` made.
pub struct GeneratedKey {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub public_key_line: String,
    pub id: KeyId,
}

/// `gpu-market policy keygen`: a new key pair as `dir/name.key` (private, mode 0600) and
/// `dir/name.pub` (the `trusted_keys` line). Neither file may exist yet.
pub fn generate_key_files(dir: &Path, name: &str) -> Result<GeneratedKey, PolicyError> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(PolicyError::Key {
            path: dir.join(name),
            reason: "the key name must be a plain file name".into(),
        });
    }
    let key = PrivateKey::generate()?;
    let private_key = dir.join(format!("{name}.key"));
    let public_key = dir.join(format!("{name}.pub"));
    if public_key.exists() {
        return Err(PolicyError::Key {
            path: public_key,
            reason: "already exists; choose another --name".into(),
        });
    }
    key.write_new(&private_key)?;
    let line = key.public_key_line();
    std::fs::write(&public_key, format!("{line}\n"))
        .map_err(|e| PolicyError::io("writing", &public_key, e))?;
    Ok(GeneratedKey {
        private_key,
        public_key,
        public_key_line: line,
        id: key.id(),
    })
}

/// `gpu-market policy sign`: writes `module.sig` (temp file + rename, so a watcher never reads half
/// of it) signed by the private key in `key_file`. Returns the signature file's path and the line.
pub fn sign_module_file(module: &Path, key_file: &Path) -> Result<(PathBuf, String), PolicyError> {
    let key = PrivateKey::read(key_file)?;
    let bytes = std::fs::read(module).map_err(|e| PolicyError::io("reading", module, e))?;
    let line = key.sign(&bytes);
    let path = signature_path(module);
    let tmp = module.with_file_name(format!(
        ".{}{SIGNATURE_SUFFIX}.{}.tmp",
        module
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, format!("{line}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PolicyError::io("writing", &path, e)
        })?;
    Ok((path, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(keys: &[&PrivateKey]) -> TrustedKeys {
        let lines: Vec<String> = keys.iter().map(|k| k.public_key_line()).collect();
        TrustedKeys::parse(&lines).unwrap()
    }

    #[test]
    fn a_signature_verifies_and_names_its_key() {
        let key = PrivateKey::generate().unwrap();
        let line = key.sign(b"module bytes");
        assert_eq!(
            trusting(&[&key]).verify("m.wasm", b"module bytes", Some(line.as_bytes())),
            Ok(Verified::SignedBy(key.id()))
        );
        // A trailing newline (as in the file) does not matter.
        let in_file = format!("{line}\n");
        assert!(
            trusting(&[&key])
                .verify("m.wasm", b"module bytes", Some(in_file.as_bytes()))
                .is_ok()
        );
    }

    #[test]
    fn without_trusted_keys_nothing_is_required() {
        assert_eq!(
            TrustedKeys::default().verify("m.wasm", b"x", None),
            Ok(Verified::NotRequired)
        );
    }

    #[test]
    fn each_failure_names_its_reason() {
        let key = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        let trust = trusting(&[&key]);
        let line = key.sign(b"module");
        let verify = |bytes: &[u8], sig: Option<&str>| {
            trust
                .verify("m.wasm", bytes, sig.map(str::as_bytes))
                .unwrap_err()
        };
        assert!(verify(b"module", None).starts_with("missing signature"));
        assert!(verify(b"module", Some("nonsense")).starts_with("malformed signature"));
        let unknown = verify(b"module", Some(&other.sign(b"module")));
        assert!(
            unknown.contains(&format!("unknown key {}", other.id())),
            "{unknown}"
        );
        let tampered = verify(b"module!", Some(&line));
        assert!(
            tampered.starts_with("bad signature") && tampered.contains("changed after"),
            "{tampered}"
        );
        // A signature file whose digest was edited to match the tampered module.
        let (signed, changed) = (ModuleDigest::of(b"module"), ModuleDigest::of(b"module!"));
        assert_eq!(signed.hex(), crate::policy::wasm::sha256_hex(b"module"));
        let forged = line.replace(&signed.hex(), &changed.hex());
        let forged = verify(b"module!", Some(&forged));
        assert!(
            forged.starts_with("bad signature") && forged.contains("does not verify"),
            "{forged}"
        );
    }

    #[test]
    fn malformed_signature_lines_are_refused() {
        let key = PrivateKey::generate().unwrap();
        let line = key.sign(b"m");
        for bad in [
            String::new(),
            line.replacen("gpu-market-signature-v1", "v0", 1),
            format!("{line} extra=1"),
            format!("{line} key={}", key.id()),
            line.replacen("key=", "key=zz", 1),
            line.replacen("ed25519=", "ed25519=AAAA", 1),
            "x".repeat(MAX_SIGNATURE_BYTES + 1),
        ] {
            assert!(ModuleSignature::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let parsed = ModuleSignature::parse(line.as_bytes()).unwrap();
        assert_eq!(parsed.line(), line);
    }

    #[test]
    fn bad_trusted_key_lines_are_refused() {
        let key = PrivateKey::generate().unwrap();
        for bad in [
            "ed25519:".to_owned(),
            "rsa:AAAA".to_owned(),
            "ed25519:not base64!".to_owned(),
            format!("ed25519:{}", BASE64.encode([1u8; 31])),
        ] {
            assert!(
                TrustedKeys::parse(std::slice::from_ref(&bad)).is_err(),
                "{bad}"
            );
        }
        let twice = [key.public_key_line(), key.public_key_line()];
        assert!(TrustedKeys::parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn private_keys_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate_key_files(dir.path(), "ops").unwrap();
        let read = PrivateKey::read(&made.private_key).unwrap();
        assert_eq!(read.id(), made.id);
        assert_eq!(read.public_key_line(), made.public_key_line);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&made.private_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            generate_key_files(dir.path(), "ops").is_err(),
            "an existing key is never replaced"
        );
    }
}
