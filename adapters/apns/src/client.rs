//! The HTTP/2 client: TLS with ALPN `h2` only (Mozilla's roots, plus `ca_file` if given), one
//! connection per origin carrying every concurrent stream; hyper opens a new connection when
//! APNs sends GOAWAY.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::ApnsError;

pub(crate) type H2Client = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Reads every certificate in a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ApnsError> {
    let fail = |reason: String| ApnsError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(certs)
}

/// The client, trusting `ca_file` besides the usual roots when it is not empty.
pub(crate) fn build(ca_file: &Path) -> Result<H2Client, ApnsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !ca_file.as_os_str().is_empty() {
        for cert in read_certificates(ca_file)? {
            roots.add(cert).map_err(|e| ApnsError::Ca {
                path: ca_file.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ApnsError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector))
}
