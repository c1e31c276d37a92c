//! # mg-pki: a home cluster's CA and the certificates it issues
//!
//! A home cluster has a CA of its own. It signs one server certificate for
//! the home's SC and SPUs (names: the cluster's domain and `*.domain`, so
//! that Fluvio's SNI `<spu key>.<domain>` matches), and one client
//! certificate per remote, whose common name is the remote's id: the id a
//! remote proves, where Fluvio's remotes only assert it.
//!
//! Map: [`Ca`] generates, saves, loads and issues; [`Issued`] is one
//! certificate with its key, PEM-encoded, and its fingerprint;
//! [`common_name`] reads a certificate's CN; [`write_private`] writes key
//! material readable by its owner only.
//!
//! Keys never leave this crate's values except as PEM written to files of
//! mode 0600 or into an export file; nothing here logs them.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The CA certificate's file in a TLS directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file (mode 0600).
pub const CA_KEY: &str = "ca.key";
/// The server certificate's file.
pub const SERVER_CERT: &str = "server.pem";
/// The server key's file (mode 0600).
pub const SERVER_KEY: &str = "server.key";
/// The file naming the home's TLS domain.
pub const DOMAIN: &str = "domain";
/// The TLS domain of a home unless said otherwise: its SC is dialed as
/// this name and each SPU as `<spu key>.` this name.
pub const DEFAULT_DOMAIN: &str = "mirror-guard.local";

/// How long issued certificates are valid unless said otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A time outside what a certificate can say.
    #[error("invalid validity period")]
    Validity,
}

/// One issued certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key: key material, never logged.
    pub key_pem: String,
    /// SHA-256 of the certificate's DER, hex: what a home remembers of the
    /// certificate it issued to a remote.
    pub fingerprint: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issued {{ fingerprint: {} }}", self.fingerprint)
    }
}

/// A home cluster's certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

fn offset(at: SystemTime) -> Result<time::OffsetDateTime, PkiError> {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Validity)?
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|_| PkiError::Validity)
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::File {
        path: path.display().to_string(),
        source,
    })
}

/// SHA-256 of `der`, as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Ca {
    /// A new CA for the cluster called `cluster` (ten years).
    pub fn generate(cluster: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{cluster} mirror CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = offset(now - Duration::from_secs(3600))?;
        params.not_after = offset(now + 10 * DEFAULT_VALIDITY)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// Loads the CA of a TLS directory (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_pem = read(&dir.join(CA_CERT))?;
        let key = KeyPair::from_pem(&read(&dir.join(CA_KEY))?)?;
        // rcgen signs with the CA's name and key: the certificate is made
        // again from the stored one's parameters, and what it signs chains
        // to the stored certificate.
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)?;
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// Writes `ca.pem` and `ca.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        create_dir(dir)?;
        write_private(&dir.join(CA_CERT), self.cert.pem().as_bytes())?;
        write_private(&dir.join(CA_KEY), self.key.serialize_pem().as_bytes())
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A client certificate for remote `remote_id` (its CN), valid from
    /// now for `validity`.
    pub fn issue_client(&self, remote_id: &str, validity: Duration) -> Result<Issued, PkiError> {
        let now = SystemTime::now();
        self.issue_client_between(remote_id, now - Duration::from_secs(3600), now + validity)
    }

    /// A client certificate for `remote_id` valid between two instants (an
    /// expired one, for a test of its refusal).
    pub fn issue_client_between(
        &self,
        remote_id: &str,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, remote_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = offset(from)?;
        params.not_after = offset(until)?;
        self.sign(params)
    }

    /// The server certificate of the home's SC and SPUs: valid for
    /// `domain`, `*.domain` (SPUs are dialed with SNI `<key>.<domain>`) and
    /// any further `names` (addresses, `localhost`).
    pub fn issue_server(&self, domain: &str, names: &[&str]) -> Result<Issued, PkiError> {
        let mut all = vec![domain.to_string(), format!("*.{domain}")];
        all.extend(names.iter().map(|n| n.to_string()));
        let mut params = CertificateParams::new(all)?;
        params.distinguished_name.push(DnType::CommonName, domain);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = SystemTime::now();
        params.not_before = offset(now - Duration::from_secs(3600))?;
        params.not_after = offset(now + 10 * DEFAULT_VALIDITY)?;
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            fingerprint: fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The common name of a DER certificate, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::File {
            path: dir.display().to_string(),
            source,
        })
}

/// Writes `bytes` to `path`, readable and writable by its owner only (an
/// existing file is narrowed to that too), and syncs it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file_error = |source| PkiError::File {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(file_error)?;
    file.write_all(bytes).map_err(file_error)?;
    file.sync_all().map_err(file_error)
}

/// Creates a home's TLS directory: a new CA and the server certificate for
/// `domain` (plus `names`), every file 0600. Leaves an existing one alone.
pub fn init_home(dir: &Path, domain: &str, names: &[&str]) -> Result<(), PkiError> {
    init_home_with(dir, domain, names, None)
}

/// [`init_home`], with the CA given (`ca_dir` holds `ca.pem` and `ca.key`,
/// copied in) instead of generated.
pub fn init_home_with(
    dir: &Path,
    domain: &str,
    names: &[&str],
    ca_dir: Option<&Path>,
) -> Result<(), PkiError> {
    if dir.join(CA_CERT).exists() {
        return Ok(());
    }
    let ca = match ca_dir {
        Some(given) => Ca::load(given)?,
        None => Ca::generate(domain)?,
    };
    create_dir(dir)?;
    match ca_dir {
        // The CA as given, byte for byte: what remotes already trust.
        Some(given) => {
            write_private(&dir.join(CA_CERT), read(&given.join(CA_CERT))?.as_bytes())?;
            write_private(&dir.join(CA_KEY), read(&given.join(CA_KEY))?.as_bytes())?;
        }
        None => ca.save(dir)?,
    }
    let server = ca.issue_server(domain, names)?;
    write_private(&dir.join(SERVER_CERT), server.cert_pem.as_bytes())?;
    write_private(&dir.join(SERVER_KEY), server.key_pem.as_bytes())?;
    write_private(&dir.join(DOMAIN), domain.as_bytes())
}

/// The directory, inside a home's TLS directory, that records which
/// certificates each remote may present: one file per remote id, one
/// fingerprint per line.
pub const ISSUED: &str = "issued";

fn issued_file(dir: &Path, remote: &str) -> Option<std::path::PathBuf> {
    let usable = !remote.is_empty()
        && remote != "."
        && remote != ".."
        && remote
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    usable.then(|| dir.join(ISSUED).join(remote))
}

/// Records that `remote` may present the certificate `fingerprint`; with
/// `rotate`, only that one from now on (every earlier one is refused).
pub fn record_issued(
    dir: &Path,
    remote: &str,
    fingerprint: &str,
    rotate: bool,
) -> Result<(), PkiError> {
    let file = issued_file(dir, remote).ok_or(PkiError::Validity)?;
    create_dir(&dir.join(ISSUED))?;
    let mut lines = if rotate {
        String::new()
    } else {
        std::fs::read_to_string(&file).unwrap_or_default()
    };
    lines.push_str(fingerprint);
    lines.push('\n');
    write_private(&file, lines.as_bytes())
}

/// Whether `remote` may present the certificate `fingerprint`: it must be
/// one the home issued to it and did not rotate out since.
pub fn is_issued(dir: &Path, remote: &str, fingerprint: &str) -> bool {
    issued_file(dir, remote)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .is_some_and(|lines| lines.lines().any(|line| line.trim() == fingerprint))
}

/// The TLS domain of the home whose TLS directory is `dir`.
pub fn domain(dir: &Path) -> Result<String, PkiError> {
    Ok(read(&dir.join(DOMAIN))?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        decode_base64(&body)
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes().filter(|c| *c != b'=') {
            let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    #[test]
    fn a_saved_ca_issues_certificates_naming_the_remote() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        init_home(&tls, "home.test", &["localhost"]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(domain(&tls).unwrap(), "home.test");
        for file in [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, DOMAIN] {
            let mode = std::fs::metadata(tls.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let ca = Ca::load(&tls).unwrap();
        let issued = ca.issue_client("edge1", DEFAULT_VALIDITY).unwrap();
        assert_eq!(
            common_name(&der(&issued.cert_pem)).as_deref(),
            Some("edge1")
        );
        assert_eq!(issued.fingerprint, fingerprint(&der(&issued.cert_pem)));
        let again = ca.issue_client("edge1", DEFAULT_VALIDITY).unwrap();
        assert_ne!(issued.fingerprint, again.fingerprint, "a new key each time");

        assert!(
            !is_issued(&tls, "edge1", &issued.fingerprint),
            "never recorded"
        );
        record_issued(&tls, "edge1", &issued.fingerprint, false).unwrap();
        record_issued(&tls, "edge1", &again.fingerprint, false).unwrap();
        assert!(is_issued(&tls, "edge1", &issued.fingerprint));
        assert!(is_issued(&tls, "edge1", &again.fingerprint));
        assert!(!is_issued(&tls, "edge2", &issued.fingerprint), "per remote");
        let rotated = ca.issue_client("edge1", DEFAULT_VALIDITY).unwrap();
        record_issued(&tls, "edge1", &rotated.fingerprint, true).unwrap();
        assert!(is_issued(&tls, "edge1", &rotated.fingerprint));
        assert!(
            !is_issued(&tls, "edge1", &issued.fingerprint),
            "rotated out"
        );
        assert!(!is_issued(&tls, "../edge1", &rotated.fingerprint));

        // A home given that CA keeps it byte for byte.
        let other = dir.path().join("other");
        init_home_with(&other, "home.test", &[], Some(&tls)).unwrap();
        assert_eq!(
            std::fs::read(other.join(CA_CERT)).unwrap(),
            std::fs::read(tls.join(CA_CERT)).unwrap()
        );
        assert!(other.join(SERVER_CERT).exists());
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}
