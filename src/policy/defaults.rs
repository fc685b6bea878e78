//! The default policies (`policies/` of the source tree) embedded in the binary, so that an installed
//! `gpu-market` serves without a policies directory and can write one out (`gpu-market policy init`).

use std::path::{Path, PathBuf};

/// Every file of the shipped `policies/` directory, by name.
pub const FILES: [(&str, &[u8]); 5] = [
    (
        "policies.toml",
        include_bytes!("../../policies/policies.toml"),
    ),
    (
        "pricing-demand.wasm",
        include_bytes!("../../policies/pricing-demand.wasm"),
    ),
    (
        "pricing-scarcity.wasm",
        include_bytes!("../../policies/pricing-scarcity.wasm"),
    ),
    (
        "booking-timeout-grace.wasm",
        include_bytes!("../../policies/booking-timeout-grace.wasm"),
    ),
    (
        "review-moderation-basic.wasm",
        include_bytes!("../../policies/review-moderation-basic.wasm"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DefaultsError {
    #[error(
        "{} already exists{}; nothing was written (--force overwrites)",
        .0.first().map(|p| p.display().to_string()).unwrap_or_default(),
        if .0.len() > 1 { format!(" (and {} more)", .0.len() - 1) } else { String::new() }
    )]
    Exists(Vec<PathBuf>),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the embedded defaults into `dir` (created if missing) and returns the paths written. Unless
/// `force`, refuses (writing nothing) when any of the files already exists. Each file is written to a
/// temporary name and renamed, so a watching server never reads half a module.
pub fn write_to(dir: &Path, force: bool) -> Result<Vec<PathBuf>, DefaultsError> {
    let paths: Vec<PathBuf> = FILES.iter().map(|(name, _)| dir.join(name)).collect();
    if !force {
        let existing: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return Err(DefaultsError::Exists(existing));
        }
    }
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| DefaultsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    for ((name, bytes), path) in FILES.iter().zip(&paths) {
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, bytes).map_err(write_err(&temporary))?;
        std::fs::rename(&temporary, path).map_err(write_err(path))?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_config_names_only_embedded_modules() {
        let config = std::str::from_utf8(FILES[0].1).unwrap_or_default();
        for line in config.lines().filter(|l| l.starts_with("file = ")) {
            let file = line.trim_start_matches("file = ").trim_matches('"');
            assert!(FILES.iter().any(|(name, _)| *name == file), "{file}");
        }
    }
}
