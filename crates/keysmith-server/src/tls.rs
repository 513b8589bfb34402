//! TLS with rustls: the server's identity and, for mutual TLS, the CA that
//! client certificates must chain to.
use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

pub fn server_config(config: &TlsConfig) -> anyhow::Result<ServerTlsConfig> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .with_context(|| format!("cannot read server.tls.{what} {}", path.display()))
    };
    let cert = read("cert", &config.cert)?;
    let key = read("key", &config.key)?;
    for (what, pem, marker) in [("cert", &cert, "CERTIFICATE"), ("key", &key, "PRIVATE KEY")] {
        if !String::from_utf8_lossy(pem).contains(marker) {
            anyhow::bail!("server.tls.{what}: the file holds no PEM {marker}");
        }
    }
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &config.client_ca {
        let ca = read("client_ca", ca)?;
        if !String::from_utf8_lossy(&ca).contains("CERTIFICATE") {
            anyhow::bail!("server.tls.client_ca: the file holds no PEM CERTIFICATE");
        }
        // Without client_auth_optional, a client without a certificate
        // signed by this CA cannot complete the handshake.
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(tls)
}
