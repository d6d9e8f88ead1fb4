//! Secrets: the per-process shared token (REST) and the persistent agent token (gRPC).
//!
//! Neither token is ever logged; `Debug` is implemented by hand to redact them.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use subtle::ConstantTimeEq;

use crate::util::{now_unix_secs, random_hex};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error("token file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {0} does not hold a 64 character hex token")]
    BadFile(String),
}

/// Why a bearer header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header, or not `Bearer <token>`.
    Missing,
    /// Well-formed but not the expected token.
    Invalid,
}

/// A secret compared in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// Exposes the secret (for writing the token file or building a client header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }

    /// Checks an `Authorization` header value of the form `Bearer <token>`.
    pub fn check_bearer(&self, header: Option<&[u8]>) -> Result<(), BearerError> {
        let header = header.ok_or(BearerError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| BearerError::Missing)?;
        let (scheme, token) = header.split_once(' ').ok_or(BearerError::Missing)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(BearerError::Missing);
        }
        if self.matches(token) {
            Ok(())
        } else {
            Err(BearerError::Invalid)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The shared token handed to CLI/UI clients (SPEC section 2): created in memory at start.
#[derive(Debug, Clone)]
pub struct SharedToken {
    pub secret: Secret,
    /// 16 hex chars, non-secret, independent random.
    pub token_id: String,
    /// Unix seconds.
    pub issued_at: u64,
}

impl SharedToken {
    pub fn generate() -> Result<Self, AuthError> {
        Ok(Self {
            secret: Secret::new(random_hex(32).map_err(AuthError::Random)?),
            token_id: random_hex(8).map_err(AuthError::Random)?,
            issued_at: now_unix_secs(),
        })
    }
}

/// Writes `contents` to `path` with mode 0600 (tightening an existing file's mode too).
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), AuthError> {
    let io = |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads the persistent agent token from `path`, creating it (32 random bytes, hex) when absent.
pub fn load_or_create_agent_token(path: &Path) -> Result<Secret, AuthError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AuthError::BadFile(path.display().to_string()));
            }
            Ok(Secret::new(token.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_hex(32).map_err(AuthError::Random)?;
            write_secret_file(path, &token)?;
            Ok(Secret::new(token))
        }
        Err(source) => Err(AuthError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let s = Secret::new("abc".into());
        assert_eq!(s.check_bearer(None), Err(BearerError::Missing));
        assert_eq!(s.check_bearer(Some(b"abc")), Err(BearerError::Missing));
        assert_eq!(
            s.check_bearer(Some(b"Basic abc")),
            Err(BearerError::Missing)
        );
        assert_eq!(s.check_bearer(Some(b"Bearer ")), Err(BearerError::Missing));
        assert_eq!(
            s.check_bearer(Some(b"Bearer abd")),
            Err(BearerError::Invalid)
        );
        assert_eq!(s.check_bearer(Some(b"Bearer abc")), Ok(()));
        assert_eq!(s.check_bearer(Some(b"bearer abc")), Ok(()));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn shared_token_shape() {
        let t = SharedToken::generate().expect("token");
        assert_eq!(t.secret.expose().len(), 64);
        assert_eq!(t.token_id.len(), 16);
        assert!(t.issued_at > 1_600_000_000);
    }

    #[test]
    fn agent_token_is_persistent_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/agent.token");
        let a = load_or_create_agent_token(&path).expect("create");
        let b = load_or_create_agent_token(&path).expect("reload");
        assert_eq!(a.expose(), b.expose());
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
