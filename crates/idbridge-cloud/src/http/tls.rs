//! The server certificate: created self-signed on first start in `<data_dir>/tls/`, reused
//! afterwards. Clients trust `cert.pem` (the lab publishes it as `cloud.ca_cert`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;

use crate::ServeError;

pub struct TlsFiles {
    pub cert_pem: String,
    key_pem: String,
}

pub fn ensure_certificate(data_dir: &Path, hosts: &[String]) -> Result<TlsFiles, ServeError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(ServeError::Io);
        return Ok(TlsFiles {
            cert_pem: read(&cert_path)?,
            key_pem: read(&key_path)?,
        });
    }
    std::fs::create_dir_all(&dir).map_err(ServeError::Io)?;
    let certified = rcgen::generate_simple_self_signed(hosts.to_vec())
        .map_err(|e| ServeError::Tls(format!("cannot create a certificate: {e}")))?;
    let files = TlsFiles {
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
    };
    // The key is written first and only readable by us; the certificate last, so a crash in
    // between leaves no certificate without its key.
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(ServeError::Io)?;
    key.write_all(files.key_pem.as_bytes())
        .map_err(ServeError::Io)?;
    std::fs::write(&cert_path, &files.cert_pem).map_err(ServeError::Io)?;
    Ok(files)
}

pub(super) fn rustls_config(files: &TlsFiles) -> Result<RustlsConfig, ServeError> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| ServeError::Tls(format!("{what}: {e}"));
    let certs = rustls_pemfile::certs(&mut files.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("cert.pem", &e))?;
    let key = rustls_pemfile::private_key(&mut files.key_pem.as_bytes())
        .map_err(|e| tls_err("key.pem", &e))?
        .ok_or_else(|| ServeError::Tls("key.pem holds no private key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}
