//! One error type for the whole crate. Messages name the file, tensor, key or number at fault so a
//! user can act on them without a backtrace.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// The GGUF file is malformed; `offset` is the byte where reading went wrong.
    #[error("bad GGUF at byte {offset}: {msg}")]
    Gguf { offset: u64, msg: String },

    #[error("metadata key `{0}` is missing")]
    MissingKey(String),

    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    KeyType { key: String, expected: &'static str, found: &'static str },

    #[error("tensor `{0}` is missing")]
    MissingTensor(String),

    #[error("unsupported tensor type id {id}{}", name.map(|n| format!(" ({n})")).unwrap_or_default())]
    UnsupportedType { id: u32, name: Option<&'static str> },

    #[error("unsupported architecture `{0}`")]
    UnsupportedArch(String),

    #[error("bad shape: {0}")]
    Shape(String),

    #[error("GPU: {0}")]
    Gpu(String),

    #[error("{0}")]
    DoesNotFit(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
