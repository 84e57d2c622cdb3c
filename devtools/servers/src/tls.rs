// SPDX-License-Identifier: MIT OR Apache-2.0
//! A throwaway public-key infrastructure for one test server: a CA of its own and a server
//! certificate for 127.0.0.1 and localhost signed by it, written beside the server's config.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

/// The CA certificate's file name in the server's directory.
pub const CA_FILE: &str = "ca.pem";

pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server-key.pem` (mode 0600) into `dir`.
pub fn write_test_pki(dir: &Path) -> anyhow::Result<ServerFiles> {
    let ca_key = KeyPair::generate().context("generating the test CA's key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "facegate test CA");
    ca_params.distinguished_name = name;
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate().context("generating the test server's key")?;
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "facegate test broker");
    server_params.distinguished_name = name;
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    let files = ServerFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(&dir.join(CA_FILE), ca.pem())?;
    write(&files.cert, server.pem())?;
    write(&files.key, server_key.serialize_pem())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))?;
    Ok(files)
}
