//! The accept loop: plain TCP or TLS (rustls), a bound on open connections,
//! a deadline for a request's headers (slow clients), a deadline for the
//! TLS handshake, and a graceful stop that lets every request in flight be
//! answered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate and key, PEM files.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Connection handling.
#[derive(Clone, Debug)]
pub struct Net {
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head in this long is closed
    /// (and an idle keep-alive connection, once this long has passed without a new request).
    pub header_timeout: Duration,
    /// A request body that stalls this long is answered 408.
    pub body_timeout: Duration,
    /// Serve HTTPS with this certificate.
    pub tls: Option<Tls>,
}

impl Default for Net {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {why}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the pair.
    #[error("{} and {}: not a usable certificate and key: {source}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

/// A TLS acceptor for the certificate and key.
pub fn acceptor(tls: &Tls) -> Result<TlsAcceptor, TlsError> {
    let pem = |path: &PathBuf, why: String| TlsError::Pem { path: path.clone(), why };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| pem(&tls.cert, format!("cannot read certificates ({e})")))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(&tls.cert, format!("not a PEM certificate ({e})")))?;
    if certs.is_empty() {
        return Err(pem(&tls.cert, "no certificate in it".into()));
    }
    // Never the key's bytes in an error: only that it could not be used.
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|_| pem(&tls.key, "no usable PEM private key in it (PKCS#8, PKCS#1 or SEC1)".into()))?;
    // ring, as ureq's client already builds it: X25519 and NIST curves, no
    // post-quantum hybrid key exchange (rustls deprecates ring's provider for
    // that reason; aws-lc-rs has it but adds a cmake build of a C library).
    // Where post-quantum key exchange is required, terminate TLS in front.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let refused = |source| TlsError::Config { cert: tls.cert.clone(), key: tls.key.clone(), source };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(refused)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `stop` resolves, then stops
/// accepting and waits (up to 30 s) for the requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    net: &Net,
    tls: Option<TlsAcceptor>,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(net.max_connections.max(1)));
    let mut stop = std::pin::pin!(stop);
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(net.body_timeout));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(net.header_timeout).keep_alive(true);
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = watcher.watch(conn).await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake = net.header_timeout;
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            metrics::counter!("piiwatch_tls_handshake_failures_total").increment(1);
                            return;
                        }
                        Err(_) => {
                            metrics::counter!("piiwatch_tls_handshake_failures_total").increment(1);
                            return;
                        }
                    };
                    let conn = http.serve_connection(TokioIo::new(tls), service);
                    let _ = watcher.watch(conn).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("requests still in flight after 30 s; stopping anyway");
        }
    }
}
