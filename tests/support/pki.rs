//! A throwaway PKI made with the `openssl` CLI: EC P-256 keys, generated once per test binary.

use super::{run_tool, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Certificates and keys for TLS tests. All files are PEM; keys are PKCS#8.
///
/// - `ca_pem` / `ca_key`: the test CA that signed `leaf_*` and `client_*`.
/// - `ca2_pem` / `ca2_key`: an unrelated CA, for "unknown issuer" tests.
/// - `leaf_pem` / `leaf_key`: server certificate for `CN=localhost` with
///   `subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1`, `extendedKeyUsage = serverAuth`.
/// - `client_pem` / `client_key`: client certificate `CN=ferry test client`,
///   `extendedKeyUsage = clientAuth`.
#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
    /// Test CA certificate.
    pub ca_pem: PathBuf,
    /// Test CA key.
    pub ca_key: PathBuf,
    /// An unrelated CA's certificate (it signed nothing the servers present).
    pub ca2_pem: PathBuf,
    /// The unrelated CA's key.
    pub ca2_key: PathBuf,
    /// Server leaf for `localhost`, `127.0.0.1` and `::1`, signed by the test CA.
    pub leaf_pem: PathBuf,
    /// Server leaf key.
    pub leaf_key: PathBuf,
    /// Client certificate signed by the test CA.
    pub client_pem: PathBuf,
    /// Client certificate key.
    pub client_key: PathBuf,
}

static PKI: OnceLock<Pki> = OnceLock::new();

/// The test binary's PKI, generated on first use. Its directory is left under the temp dir when
/// the process exits (a static is never dropped); it is a few kilobytes.
pub fn pki() -> &'static Pki {
    PKI.get_or_init(Pki::generate)
}

const CA_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = @CN@
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

const LEAF_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = @CN@
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
";

fn openssl(dir: &Path, args: &[&str]) {
    let out = run_tool(Command::new("openssl").current_dir(dir).args(args));
    assert!(
        out.status.success(),
        "openssl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Pki {
    /// Generates a fresh PKI in a new temp dir (prefer [`pki()`], which caches one).
    pub fn generate() -> Pki {
        let dir = TempDir::new("pki");
        let d = dir.path();
        let key = |name: &str| {
            openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    name,
                ],
            )
        };
        let ca = |name: &str, cn: &str| {
            let cnf = format!("{name}.cnf");
            write(&d.join(&cnf), &CA_CNF.replace("@CN@", cn));
            key(&format!("{name}.key"));
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-config",
                    &cnf,
                    "-key",
                    &format!("{name}.key"),
                    "-sha256",
                    "-days",
                    "3650",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        };
        let leaf = |name: &str, cn: &str, section: &str, serial: &str| {
            let cnf = format!("{name}.cnf");
            write(&d.join(&cnf), &LEAF_CNF.replace("@CN@", cn));
            key(&format!("{name}.key"));
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-config",
                    &cnf,
                    "-key",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    serial,
                    "-days",
                    "825",
                    "-sha256",
                    "-extfile",
                    &cnf,
                    "-extensions",
                    section,
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        };
        ca("ca", "ferry test CA");
        ca("ca2", "ferry unrelated test CA");
        leaf("leaf", "localhost", "server", "0x1001");
        leaf("client", "ferry test client", "client", "0x1002");
        Pki {
            ca_pem: d.join("ca.pem"),
            ca_key: d.join("ca.key"),
            ca2_pem: d.join("ca2.pem"),
            ca2_key: d.join("ca2.key"),
            leaf_pem: d.join("leaf.pem"),
            leaf_key: d.join("leaf.key"),
            client_pem: d.join("client.pem"),
            client_key: d.join("client.key"),
            dir,
        }
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reads one of this PKI's files (e.g. `pki.read(&pki.ca_pem)`) for in-memory trust stores.
    pub fn read(&self, path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}
