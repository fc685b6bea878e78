//! What can stop a simulation before it runs. Once it runs nothing stops it: a policy that fails
//! answers with its fallback and is counted, as in the server.

use std::fmt;
use std::path::PathBuf;

/// One bad cell or row of an input CSV: file, line (1 = the header) and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    pub line: u64,
    /// The column's name, when the problem is in one cell.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {}", self.file.display(), self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Errors that stop `gpu-market simulate` before (or instead of) simulating.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{}", join_lines(.0))]
    Input(Vec<InputError>),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {name} cannot be used: {reason}")]
    Policy { name: String, reason: String },
    #[error("{0}")]
    Usage(String),
}

fn join_lines(errors: &[InputError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl SimError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }
}
