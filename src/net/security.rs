//! [`Security`]: the shared token and TLS settings every connection of a
//! cluster is checked against.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::{Error, Result};

/// The environment variable holding the cluster's token.
pub const TOKEN_VARIABLE: &str = "RASK_AUTH_TOKEN";

/// How a process proves itself to the cluster and checks its peers.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// A shared secret every connection must present; `None` accepts all.
    pub token: Option<String>,
    /// TLS, when the cluster uses it.
    pub tls: Option<TlsFiles>,
    /// Listen beyond loopback even with neither token nor TLS (`--insecure`).
    pub insecure: bool,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// This process's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The authority that signed the peers' certificates (and ours).
    pub ca: PathBuf,
}

impl Security {
    /// No TLS, and the token in `RASK_AUTH_TOKEN` if set.
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            token: std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()),
            tls: None,
            insecure: false,
        })
    }

    /// Whether connections must prove themselves: a token, or TLS with
    /// client certificates.
    pub fn checks_callers(&self) -> bool {
        self.token.is_some() || self.tls.is_some()
    }

    /// Refuses a port serving `port` at `address` to everyone beyond this
    /// machine, when nothing checks who connects (`checks_callers`) and the
    /// operator did not accept the risk (`--insecure`).
    ///
    /// ```
    /// use rask::internals::net::Security;
    /// let open = Security::default();
    /// assert!(open.may_expose("Flight", "127.0.0.1:8786".parse().unwrap(), false).is_ok());
    /// let err = open.may_expose("Flight", "0.0.0.0:8786".parse().unwrap(), false).unwrap_err();
    /// assert!(err.to_string().contains("--auth-token"));
    /// assert!(open.may_expose("Flight", "0.0.0.0:8786".parse().unwrap(), true).is_ok());
    /// ```
    pub fn may_expose(
        &self,
        port: &'static str,
        address: std::net::SocketAddr,
        checks_callers: bool,
    ) -> Result<()> {
        if checks_callers || self.insecure || address.ip().is_loopback() {
            return Ok(());
        }
        Err(Error::Exposed { port, address })
    }

    /// TLS for the ports people reach with browsers and SQL clients (the
    /// dashboard, PostgreSQL): our certificate; client certificates signed by
    /// the cluster's authority are required when `client_certificates`.
    pub fn tls_acceptor(&self, client_certificates: bool) -> Result<Option<TlsAcceptor>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        tls.acceptor(client_certificates).map(Some)
    }

    /// `http` or `https`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The server side of TLS, when on: our certificate, peers checked against the CA.
    pub(crate) fn server_tls(&self) -> Result<Option<ServerTlsConfig>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let (identity, ca) = tls.load()?;
        Ok(Some(
            ServerTlsConfig::new().identity(identity).client_ca_root(ca),
        ))
    }

    /// The client side of TLS, when on.
    pub(crate) fn client_tls(&self, host: &str) -> Result<Option<ClientTlsConfig>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let (identity, ca) = tls.load()?;
        Ok(Some(
            ClientTlsConfig::new()
                .domain_name(host)
                .ca_certificate(ca)
                .identity(identity),
        ))
    }

    /// Adds our token to an outgoing request.
    pub(crate) fn authorize<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// Whether `presented` is the cluster's token (any, when it has none).
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        self.token
            .as_ref()
            .is_none_or(|token| constant_time_eq(presented.as_bytes(), token.as_bytes()))
    }

    /// Checks an incoming request's token; logs and refuses a wrong or missing one.
    pub(crate) fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.token.is_none() {
            return Ok(());
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented.is_some_and(|p| self.accepts(p)) {
            return Ok(());
        }
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
        let what = if presented.is_some() { "a wrong" } else { "no" };
        tracing::warn!(%peer, "refused a connection with {what} auth token");
        Err(Status::unauthenticated(format!(
            "refused: {what} auth token (set --auth-token or {TOKEN_VARIABLE} to the cluster's token)"
        )))
    }
}

impl TlsFiles {
    /// A rustls acceptor with our certificate (see [`Security::tls_acceptor`]).
    fn acceptor(&self, client_certificates: bool) -> Result<TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |path: &PathBuf, e: &dyn std::fmt::Display| {
            Error::Config(format!("TLS: {}: {e}", path.display()))
        };
        let certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>> {
            CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| bad(path, &e))
        };
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad(&self.key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
        let builder = if client_certificates {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(&self.ca)? {
                roots.add(cert).map_err(|e| bad(&self.ca, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad(&self.ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| bad(&self.cert, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"postgresql".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Our identity and the authority, read from their files.
    fn load(&self) -> Result<(Identity, Certificate)> {
        let identity = Identity::from_pem(read(&self.cert)?, read(&self.key)?);
        Ok((identity, Certificate::from_pem(read(&self.ca)?)))
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })
}

/// Compares without stopping at the first difference (tokens, SCRAM keys).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
