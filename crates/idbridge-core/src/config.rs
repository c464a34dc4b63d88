//! What every idbridge configuration file shares: a version line and errors that name the file.
//! Reading the file is the caller's (I/O stays at the edge); this only interprets the outcome.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Turns the result of reading `path` into a parsed configuration, naming the file in errors.
/// Use as `from_file(path, std::fs::read_to_string(path), Config::parse)`.
pub fn from_file<T>(
    path: &Path,
    text: std::io::Result<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let text = text.map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    })
}

/// The check every config makes first.
pub fn check_version(found: u32, supported: u32) -> Result<(), String> {
    if found == supported {
        return Ok(());
    }
    Err(format!(
        "version = {found} is not supported; this idbridge reads version = {supported}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let p = Path::new("/etc/x.toml");
        let e = from_file(p, Ok("v".into()), |_| Err::<(), _>("bad key".into())).unwrap_err();
        assert_eq!(e.to_string(), "/etc/x.toml: bad key");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = from_file(p, Err(missing), |_| Ok(())).unwrap_err();
        assert_eq!(e.to_string(), "cannot read /etc/x.toml");
        assert!(check_version(2, 1).unwrap_err().contains("version = 2"));
    }
}
