//! TLS: the certificate chain and key of every HTTPS listen address, read from PEM files at
//! start and at every reload, kept in one [`Certs`] store the reloader replaces whole. Each
//! HTTPS listener's rustls configuration resolves its certificate from the store at every
//! handshake, so a renewed certificate serves new connections at once while connections
//! already open keep theirs; a reload with a certificate that cannot be used is refused and
//! the old one stays.
//!
//! rustls with the `ring` provider; TLS 1.3 and 1.2 only; ALPN `h2` and `http/1.1` (actix
//! adds both).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_config::{Config, TlsListen};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate or key cannot be used; every message starts with the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read or is not PEM.
    #[error("{}: cannot read a PEM {what}: {why}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The reader's or parser's error.
        why: String,
    },
    /// The file has no certificate.
    #[error("{}: no certificate in it (expected `-----BEGIN CERTIFICATE-----` blocks, the server's first)", .0.display())]
    NoCertificate(PathBuf),
    /// The server's certificate does not parse.
    #[error("{}: not a usable certificate: {why}", file.display())]
    Certificate {
        /// The certificate file.
        file: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// The key is of a kind the provider cannot sign with, or does not match the certificate.
    #[error("{}: the key cannot be used with {}: {why}", key.display(), cert.display())]
    Key {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// What rustls said.
        why: String,
    },
}

/// The crypto provider every listener uses: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads one address's certificate chain and key, checking that they belong together.
pub(crate) fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |file: &Path, what, why: rustls::pki_types::pem::Error| TlsError::Read {
        file: file.to_owned(),
        what,
        why: why.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, "certificate chain", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, "certificate chain", e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, "private key", e))?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InvalidCertificate(why) => {
            TlsError::Certificate { file: cert.to_owned(), why: format!("{why:?}") }
        }
        e => TlsError::Key { key: key.to_owned(), cert: cert.to_owned(), why: e.to_string() },
    })
}

/// Every HTTPS address's certificate, by configured address.
pub(crate) type CertMap = HashMap<SocketAddr, Arc<CertifiedKey>>;

/// Reads the certificates of every HTTPS address of `config`; all problems, or all keys.
pub fn load(config: &Config) -> Result<CertMap, Vec<TlsError>> {
    let mut map = CertMap::new();
    let mut errors = Vec::new();
    for TlsListen { addr, cert, key } in &config.tls {
        match load_pair(cert, key) {
            Ok(k) => {
                map.insert(*addr, Arc::new(k));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(map) } else { Err(errors) }
}

/// The certificates being served, replaced whole by a reload.
#[derive(Debug, Default)]
pub struct Certs {
    by_addr: ArcSwap<CertMap>,
}

impl Certs {
    /// Serves `map` from now on (new handshakes; open connections keep theirs).
    pub fn store(&self, map: CertMap) {
        self.by_addr.store(Arc::new(map));
    }

    /// The rustls configuration of the HTTPS listener configured as `addr`.
    pub(crate) fn server_config(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> std::io::Result<rustls::ServerConfig> {
        let resolver = Resolver { certs: Arc::clone(self), addr };
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        Ok(config)
    }
}

/// One listener's view of the store.
#[derive(Debug)]
struct Resolver {
    certs: Arc<Certs>,
    addr: SocketAddr,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.by_addr.load().get(&self.addr).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_empty_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .expect("write");
        let cases: &[(&Path, &str)] = &[
            (&missing, "missing.pem: cannot read a PEM certificate chain"),
            (&empty, "empty.pem: no certificate in it"),
            (&garbage, "garbage.pem: cannot read a PEM certificate chain"),
        ];
        for (cert, want) in cases {
            let e = load_pair(cert, &missing).expect_err("must fail").to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }
}
