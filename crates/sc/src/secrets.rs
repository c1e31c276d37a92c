//! Key material kept out of the metadata: what a remote cluster needs to
//! dial its home over mutual TLS (the home CA, its client certificate and
//! key, the home's TLS domain). Fluvio keeps these in the Home mirror
//! object itself, in plaintext metadata that lists and pushes show; here
//! they live in files of mode 0600 under `<sc data dir>/secrets/homes/<id>/`,
//! the metadata records only that they exist, and they leave the SC only
//! over the private control channel, to its own SPUs. Nothing here logs them.

use std::io;
use std::path::{Path, PathBuf};

use fluvio_controlplane_metadata::mirror::ClientTls;

const CA: &str = "ca.pem";
const CERT: &str = "client.pem";
const KEY: &str = "client.key";
const DOMAIN: &str = "domain";

/// The SC's secrets directory.
#[derive(Debug, Clone)]
pub struct Secrets {
    dir: PathBuf,
}

fn usable(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Secrets {
    /// Secrets under `data_dir/secrets`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("secrets"),
        }
    }

    fn home_dir(&self, home: &str) -> io::Result<PathBuf> {
        if !usable(home) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("home id {home:?} is not usable as a directory name"),
            ));
        }
        Ok(self.dir.join("homes").join(home))
    }

    /// Stores what dialing `home` takes (files of mode 0600).
    pub fn put_home(&self, home: &str, tls: &ClientTls) -> io::Result<()> {
        let dir = self.home_dir(home)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
        }
        for (file, text) in [
            (CA, &tls.ca_cert),
            (CERT, &tls.client_cert),
            (KEY, &tls.client_key),
            (DOMAIN, &tls.domain),
        ] {
            mg_pki::write_private(&dir.join(file), text.as_bytes())
                .map_err(|err| io::Error::other(err.to_string()))?;
        }
        crate::store::sync_dir(&dir)
    }

    /// What dialing `home` takes, if it was stored.
    pub fn home(&self, home: &str) -> io::Result<Option<ClientTls>> {
        let dir = self.home_dir(home)?;
        if !dir.join(KEY).exists() {
            return Ok(None);
        }
        let read = |file: &str| std::fs::read_to_string(dir.join(file));
        Ok(Some(ClientTls {
            domain: read(DOMAIN)?,
            ca_cert: read(CA)?,
            client_cert: read(CERT)?,
            client_key: read(KEY)?,
        }))
    }
}
