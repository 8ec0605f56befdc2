//! Reading files that users wrote, with the limits that keep bad input from hurting us.
//!
//! Every prompt, tests file, partial and config file goes through [`read_text`], so empty, binary,
//! non-UTF-8 and oversized files get the same clear error everywhere instead of a panic or a
//! confusing parser message.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Position};

/// Files above this size are refused before they are read into memory.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UserFileError {
    #[error("cannot read file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file is too large ({size} bytes; the limit is {limit} bytes)", limit = MAX_FILE_BYTES)]
    TooLarge { path: PathBuf, size: u64 },
    #[error("file looks binary (it contains a NUL byte); expected UTF-8 text")]
    Binary { path: PathBuf, position: Position },
    #[error("file is not valid UTF-8 (invalid byte 0x{byte:02x}); save it as UTF-8")]
    NotUtf8 {
        path: PathBuf,
        position: Position,
        byte: u8,
    },
}

impl UserFileError {
    pub fn path(&self) -> &Path {
        match self {
            UserFileError::Io { path, .. }
            | UserFileError::TooLarge { path, .. }
            | UserFileError::Binary { path, .. }
            | UserFileError::NotUtf8 { path, .. } => path,
        }
    }

    pub fn to_diagnostic(&self) -> Diagnostic {
        let position = match self {
            UserFileError::Binary { position, .. } | UserFileError::NotUtf8 { position, .. } => {
                *position
            }
            _ => Position::START,
        };
        Diagnostic::error(self.path(), position, self.to_string())
    }
}

/// Reads a whole text file, refusing what is not reasonable UTF-8 text. A leading byte-order mark
/// is dropped because editors on Windows add it and it would otherwise break front-matter detection.
pub fn read_text(path: &Path) -> Result<String, UserFileError> {
    let io_error = |source| UserFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(UserFileError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // Read one byte past the limit so a file that grows after the metadata call is still caught.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(UserFileError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    decode_text(path, bytes)
}

/// The pure half of [`read_text`]: bytes to text with located errors.
pub fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String, UserFileError> {
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        return Err(UserFileError::Binary {
            path: path.to_path_buf(),
            position: byte_position(&bytes, nul),
        });
    }
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
        Err(err) => {
            let valid_up_to = err.utf8_error().valid_up_to();
            let bytes = err.into_bytes();
            Err(UserFileError::NotUtf8 {
                path: path.to_path_buf(),
                position: byte_position(&bytes, valid_up_to),
                byte: bytes.get(valid_up_to).copied().unwrap_or(0),
            })
        }
    }
}

fn byte_position(bytes: &[u8], offset: usize) -> Position {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Position::new(line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<String, UserFileError> {
        decode_text(Path::new("f.prompty"), bytes.to_vec())
    }

    #[test]
    fn refuses_binary_with_position_of_first_nul() {
        let err = decode(b"ab\ncd\0e").unwrap_err();
        assert_eq!(
            err.to_diagnostic().to_string(),
            "f.prompty:2:3: error: file looks binary (it contains a NUL byte); expected UTF-8 text"
        );
    }

    #[test]
    fn refuses_latin1_with_the_offending_byte() {
        let err = decode(b"name: caf\xe9\n").unwrap_err();
        assert_eq!(
            err.to_diagnostic().to_string(),
            "f.prompty:1:10: error: file is not valid UTF-8 (invalid byte 0xe9); save it as UTF-8"
        );
    }

    #[test]
    fn strips_byte_order_mark() {
        assert_eq!(decode("\u{feff}---\n".as_bytes()).unwrap(), "---\n");
    }

    #[test]
    fn refuses_oversized_files_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.prompty");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(matches!(
            read_text(&path),
            Err(UserFileError::TooLarge { .. })
        ));
    }
}
