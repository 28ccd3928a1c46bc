//! `[server.tls]`: the listener's rustls configuration from PEM files.
//!
//! One TLS stack for the whole binary: rustls with the `ring` provider,
//! which async-nats already brings (no OpenSSL, no second crypto library).
//! ALPN offers `http/1.1` only: Engine.IO's long-polling and WebSocket are
//! HTTP/1.1 (a WebSocket over HTTP/2 needs RFC 8441, which the clients do
//! not use), and the node's listener speaks HTTP/1.1.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server configuration for `cert_file` and `key_file`; on error, the
/// key (`cert_file` or `key_file`) and what is wrong with it.
pub(crate) fn server_config(
    cert_file: &str,
    key_file: &str,
) -> Result<rustls::ServerConfig, (&'static str, String)> {
    if cert_file.is_empty() {
        return Err(("cert_file", "must be set with key_file".into()));
    }
    if key_file.is_empty() {
        return Err(("key_file", "must be set with cert_file".into()));
    }
    let certs = read_certs(cert_file).map_err(|e| ("cert_file", e))?;
    let key = read_key(key_file).map_err(|e| ("key_file", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert_file", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            (
                "key_file",
                format!("{key_file}: does not match the certificate ({e})"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not a PEM certificate chain ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{path}: holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({e})"))
}

#[cfg(test)]
mod tests {
    use super::server_config;

    #[test]
    fn missing_unreadable_and_wrong_files_name_their_key() {
        let dir = std::env::temp_dir().join(format!("riptide-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let junk = junk.to_str().unwrap();
        assert_eq!(server_config("", "k.pem").unwrap_err().0, "cert_file");
        assert_eq!(server_config("c.pem", "").unwrap_err().0, "key_file");
        let (key, why) = server_config("/nonexistent/c.pem", junk).unwrap_err();
        assert_eq!(key, "cert_file");
        assert!(why.contains("/nonexistent/c.pem"), "{why}");
        let (key, why) = server_config(junk, junk).unwrap_err();
        assert_eq!(key, "cert_file");
        assert!(why.contains("no PEM certificate"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
