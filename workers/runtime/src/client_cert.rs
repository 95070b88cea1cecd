//! Client certificates for TLS: the PEM files of a certificate (chain) and its private key, named
//! by a pair of environment variables (`PGSSLCERT`/`PGSSLKEY`, `AMQP_SSLCERT`/`AMQP_SSLKEY`).

use std::ffi::OsString;
use std::path::PathBuf;

/// A client certificate's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Files {
    /// The certificate, then any intermediates, in PEM.
    pub cert: PathBuf,
    /// Its private key, in PEM.
    pub key: PathBuf,
}

impl Files {
    /// The files the variables `cert` and `key` name: both or neither.
    pub(crate) fn from_env(cert: &str, key: &str) -> anyhow::Result<Option<Files>> {
        Self::from_values((cert, std::env::var_os(cert)), (key, std::env::var_os(key)))
    }

    fn from_values(
        (cert_var, cert): (&str, Option<OsString>),
        (key_var, key): (&str, Option<OsString>),
    ) -> anyhow::Result<Option<Files>> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(Files {
                cert: cert.into(),
                key: key.into(),
            })),
            _ => anyhow::bail!(
                "a client certificate needs both {cert_var} (its PEM file) and {key_var} (its key's)"
            ),
        }
    }

    /// The certificate file's contents; the error names the variable.
    pub(crate) fn read_cert(&self, var: &str) -> anyhow::Result<Vec<u8>> {
        read(&self.cert, var)
    }

    /// The key file's contents; the error names the variable.
    pub(crate) fn read_key(&self, var: &str) -> anyhow::Result<Vec<u8>> {
        read(&self.key, var)
    }
}

fn read(path: &std::path::Path, var: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{var}: cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::Files;

    #[test]
    fn both_files_or_neither() {
        let none = Files::from_values(("C", None), ("K", None)).unwrap();
        assert_eq!(none, None);
        let both = Files::from_values(("C", Some("c.pem".into())), ("K", Some("k.pem".into())))
            .unwrap()
            .unwrap();
        assert_eq!(
            (both.cert.to_str(), both.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        for (cert, key) in [(Some("c.pem".into()), None), (None, Some("k.pem".into()))] {
            let error = Files::from_values(("C_VAR", cert), ("K_VAR", key))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("C_VAR") && error.contains("K_VAR"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_with_its_variable() {
        let files = Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let error = files.read_cert("C_VAR").unwrap_err().to_string();
        assert!(
            error.contains("C_VAR") && error.contains("/nonexistent/cert.pem"),
            "{error}"
        );
        let error = files.read_key("K_VAR").unwrap_err().to_string();
        assert!(
            error.contains("K_VAR") && error.contains("/nonexistent/key.pem"),
            "{error}"
        );
    }
}
