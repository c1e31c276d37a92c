//! TLS for the mirror channels: the one place that accepts it and the one
//! place that dials it (rustls, with ring; no OpenSSL).
//!
//! **Where TLS is accepted.** On the same public port as plaintext clients,
//! told apart by the first byte: a TLS connection opens with a handshake
//! record (0x16), while a Fluvio frame opens with the high byte of its
//! size, and 0x16 there means a frame over 369 MB, far above any frame
//! limit (Fluvio's is 50 MiB). One port therefore serves both, with no
//! ambiguity, and the endpoints Fluvio's remotes dial (the SC's and SPU's
//! public ones) stay the ones they are given.
//!
//! **What is proven.** The server requires a client certificate chaining to
//! the home CA; the connection's [`Identity`] is its common name, the
//! remote id the certificate was issued for. Whoever serves the connection
//! compares it with the id the remote claims.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// The first byte of a TLS handshake record.
pub const HANDSHAKE: u8 = 0x16;
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {err}"))
}

fn certs(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(what, err))?;
    if certs.is_empty() {
        return Err(invalid(what, "no certificate"));
    }
    Ok(certs)
}

fn key(pem: &[u8], what: &str) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| invalid(what, err))
}

fn roots(ca_pem: &[u8]) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, "CA certificate")? {
        roots
            .add(cert)
            .map_err(|err| invalid("CA certificate", err))?;
    }
    Ok(roots)
}

/// The accepting side: the home's server certificate, and the CA its
/// remotes' certificates must chain to.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

impl TlsServer {
    /// From PEM: the CA, the server certificate (chain) and its key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone())
                .build()
                .map_err(|err| invalid("client verifier", err))?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid("TLS versions", err))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certs(cert, "server certificate")?,
                key(key_pem, "server key")?,
            )
            .map_err(|err| invalid("server certificate", err))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// From a home's TLS directory (`ca.pem`, `server.pem`, `server.key`).
    pub fn from_dir(dir: &Path) -> io::Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|err| {
                io::Error::new(err.kind(), format!("{}: {err}", dir.join(name).display()))
            })
        };
        Self::from_pem(
            &read(mg_pki::CA_CERT)?,
            &read(mg_pki::SERVER_CERT)?,
            &read(mg_pki::SERVER_KEY)?,
        )
    }
}

/// Who a TLS peer proved to be: its certificate's common name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The certificate's common name (the remote id it was issued for).
    pub common_name: String,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
}

/// Why a remote's claimed id was not taken.
pub mod refusal {
    /// The certificate's CN is not the id claimed.
    pub const ANOTHER_REMOTE: &str = "the certificate names another remote";
    /// The certificate was not recorded for this remote, or was rotated out.
    pub const NOT_ISSUED: &str = "the certificate was rotated out, or never issued to this remote";
    /// No TLS, and plaintext mirroring is not allowed.
    pub const PLAINTEXT: &str =
        "plaintext mirroring is refused: TLS with a client certificate is required";
}

/// The binding, the same at the SC and at the SPU: a remote claiming
/// `claimed` is taken for it only if its certificate (`proven`) names it and
/// was issued to it and not rotated out (recorded in `tls_dir`); without
/// TLS, only if plaintext mirroring is allowed (`insecure`). The caller then
/// checks that `claimed` is registered.
pub fn bind(
    proven: Option<&Identity>,
    claimed: &str,
    insecure: bool,
    tls_dir: Option<&Path>,
) -> Result<(), &'static str> {
    match proven {
        Some(identity) if identity.common_name != claimed => Err(refusal::ANOTHER_REMOTE),
        Some(identity)
            if !tls_dir
                .is_some_and(|dir| mg_pki::is_issued(dir, claimed, &identity.fingerprint)) =>
        {
            Err(refusal::NOT_ISSUED)
        }
        Some(_) => Ok(()),
        None if insecure => Ok(()),
        None => Err(refusal::PLAINTEXT),
    }
}

/// A connection, as it arrived.
#[derive(Debug)]
pub enum Accepted {
    /// A plaintext connection: a client, or mirror traffic without TLS.
    Plain(TcpStream),
    /// A TLS connection whose client certificate chains to the home CA.
    Tls(Box<server::TlsStream<TcpStream>>, Identity),
}

/// Tells a TLS connection from a plaintext one by its first byte and, for
/// TLS, runs the handshake (within [`HANDSHAKE_TIMEOUT`]), requiring a
/// client certificate that chains to the home CA. Without `tls`, every
/// connection is plaintext. A failed handshake is an error: the caller
/// closes the connection and logs why.
pub async fn accept(socket: TcpStream, tls: Option<&TlsServer>) -> io::Result<Accepted> {
    let Some(tls) = tls else {
        return Ok(Accepted::Plain(socket));
    };
    let mut first = [0u8; 1];
    let peeked = socket.peek(&mut first).await?;
    if peeked == 0 || first[0] != HANDSHAKE {
        return Ok(Accepted::Plain(socket));
    }
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(socket))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| {
            Some(Identity {
                common_name: mg_pki::common_name(cert)?,
                fingerprint: mg_pki::fingerprint(cert),
            })
        })
        .ok_or_else(|| invalid("client certificate", "no common name"))?;
    Ok(Accepted::Tls(Box::new(stream), identity))
}

/// The dialing side: the home CA to trust, and this remote's certificate.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// From PEM: the home CA, this remote's certificate and its key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid("TLS versions", err))?
            .with_root_certificates(roots(ca)?)
            .with_client_auth_cert(
                certs(cert, "client certificate")?,
                key(key_pem, "client key")?,
            )
            .map_err(|err| invalid("client certificate", err))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Dials `endpoint` and runs the handshake with SNI `server_name` (the
    /// name the home's certificate must be valid for).
    pub async fn connect(
        &self,
        endpoint: &str,
        server_name: &str,
    ) -> io::Result<client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|err| invalid("server name", err))?;
        let socket = crate::dial_endpoint(endpoint).await?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connector.connect(name, socket))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Home {
        _dir: tempfile::TempDir,
        ca: mg_pki::Ca,
        server: TlsServer,
    }

    fn home() -> Home {
        let dir = tempfile::tempdir().unwrap();
        mg_pki::init_home(dir.path(), "home.test", &["localhost"]).unwrap();
        Home {
            ca: mg_pki::Ca::load(dir.path()).unwrap(),
            server: TlsServer::from_dir(dir.path()).unwrap(),
            _dir: dir,
        }
    }

    fn client(ca: &mg_pki::Ca, issued: &mg_pki::Issued) -> TlsClient {
        TlsClient::from_pem(
            ca.cert_pem().as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )
        .unwrap()
    }

    /// Accepts one connection; returns what it came to.
    async fn serve_one(
        server: TlsServer,
    ) -> (
        String,
        tokio::task::JoinHandle<io::Result<Option<Identity>>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await?;
            match accept(socket, Some(&server)).await? {
                Accepted::Plain(mut socket) => {
                    socket.write_all(b"plain").await?;
                    Ok(None)
                }
                Accepted::Tls(mut stream, identity) => {
                    stream.write_all(b"tls").await?;
                    stream.flush().await?;
                    Ok(Some(identity))
                }
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_client_certificate_from_the_home_ca_proves_its_common_name() {
        let home = home();
        let issued = home
            .ca
            .issue_client("edge1", mg_pki::DEFAULT_VALIDITY)
            .unwrap();
        let (addr, served) = serve_one(home.server.clone()).await;
        let mut stream = client(&home.ca, &issued)
            .connect(&addr, "5001.home.test")
            .await
            .unwrap();
        let mut got = [0u8; 3];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"tls");
        let identity = served.await.unwrap().unwrap().unwrap();
        assert_eq!(identity.common_name, "edge1");
        assert_eq!(identity.fingerprint.len(), 64);
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused() {
        let home = home();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(home.ca.cert_pem().as_bytes()).unwrap())
            .with_no_client_auth();
        let client = TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        };
        let (addr, served) = serve_one(home.server.clone()).await;
        if let Ok(mut stream) = client.connect(&addr, "home.test").await {
            let mut got = [0u8; 3];
            assert!(stream.read_exact(&mut got).await.is_err());
        }
        assert!(served.await.unwrap().is_err(), "the handshake fails");
    }

    #[tokio::test]
    async fn plaintext_is_told_apart_by_its_first_byte() {
        let home = home();
        let (addr, served) = serve_one(home.server.clone()).await;
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        socket.write_all(&[0, 0, 0, 4, 0, 18, 0, 0]).await.unwrap();
        let mut got = [0u8; 5];
        socket.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"plain");
        assert_eq!(served.await.unwrap().unwrap(), None);
    }

    #[tokio::test]
    async fn another_ca_an_expired_certificate_and_a_wrong_name_are_refused() {
        let home = home();
        let other = mg_pki::Ca::generate("other").unwrap();
        let foreign = other
            .issue_client("edge1", mg_pki::DEFAULT_VALIDITY)
            .unwrap();
        let now = std::time::SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let expired = home
            .ca
            .issue_client_between("edge1", now - 3 * day, now - day)
            .unwrap();
        let good = home
            .ca
            .issue_client("edge1", mg_pki::DEFAULT_VALIDITY)
            .unwrap();
        // A certificate of another CA, presented with the home CA trusted.
        let foreign_client = TlsClient::from_pem(
            home.ca.cert_pem().as_bytes(),
            foreign.cert_pem.as_bytes(),
            foreign.key_pem.as_bytes(),
        )
        .unwrap();
        for (client, name) in [
            (foreign_client, "home.test"),
            (client(&home.ca, &expired), "home.test"),
            (client(&home.ca, &good), "not-the-home.example"),
        ] {
            let (addr, served) = serve_one(home.server.clone()).await;
            let dialed = client.connect(&addr, name).await;
            let refused = match dialed {
                Err(_) => true,
                // TLS 1.3: the client may finish before the server refuses.
                Ok(mut stream) => {
                    let mut got = [0u8; 3];
                    stream.read_exact(&mut got).await.is_err()
                }
            };
            assert!(refused, "{name}");
            let served = served.await.unwrap();
            assert!(!matches!(served, Ok(Some(_))), "{served:?}");
        }
    }
}
