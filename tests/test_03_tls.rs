//! TLS against a real nginx: which trust settings accept or reject its certificate (with the
//! error kind), connecting by IP address, SNI and ALPN as nginx saw them, and the negotiated
//! protocol version.
//!
//! Besides the harness's PKI, two tests need certificates it does not make (a leaf for another
//! name, an expired leaf); [`extra_leaf`] makes them with `openssl ca`, signed by the test CA.

mod support;

use ferry::{ErrorKind, Session, StatusCode, TlsSettings};
use std::path::PathBuf;
use std::process::Command;
use support::{Nginx, NginxOptions, TempDir};

const LIMIT: u64 = 1 << 20;
const BODY: &[u8] = b"secret\n";

/// nginx's view of the handshake, served on both servers (empty on plain HTTP).
const TLS_INFO_CONF: &str = "location = /tls-info { default_type text/plain; \
     return 200 \"sni=$ssl_server_name alpn=$ssl_alpn_protocol proto=$ssl_protocol\"; }";

fn nginx() -> Nginx {
    Nginx::start(
        NginxOptions::new()
            .file("s.txt", BODY)
            .server_conf(TLS_INFO_CONF),
    )
}

fn pem(path: &std::path::Path) -> Vec<u8> {
    support::pki().read(path)
}

fn fetch(s: &Session, url: &str) -> Result<Vec<u8>, ferry::Error> {
    let mut r = s.get(url)?.send()?;
    assert_eq!(r.status(), StatusCode::OK);
    r.read_to_vec(LIMIT)
}

#[test]
fn the_test_ca_is_accepted() {
    let nginx = nginx();
    let pki = nginx.pki();
    // Added to the webpki roots.
    let s = Session::builder()
        .add_root_certificates_pem(&pem(&pki.ca_pem))
        .build()
        .unwrap();
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    // As the only root.
    let s = Session::builder()
        .tls(TlsSettings {
            extra_ca_pem: Some(pem(&pki.ca_pem)),
            only_extra_roots: true,
            ..TlsSettings::default()
        })
        .build()
        .unwrap();
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    // In a bundle with the unrelated CA, in either order.
    for bundle in [
        [pem(&pki.ca2_pem), pem(&pki.ca_pem)].concat(),
        [pem(&pki.ca_pem), pem(&pki.ca2_pem)].concat(),
    ] {
        let s = Session::builder()
            .add_root_certificates_pem(&bundle)
            .build()
            .unwrap();
        assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    }
    // Per request, on a session that does not trust it.
    let s = Session::builder().build().unwrap();
    let mut r = s
        .get(&nginx.https_url("s.txt"))
        .unwrap()
        .tls(TlsSettings {
            extra_ca_pem: Some(pem(&pki.ca_pem)),
            ..TlsSettings::default()
        })
        .send()
        .unwrap();
    assert_eq!(r.read_to_vec(LIMIT).unwrap(), BODY);
    assert_eq!(nginx.wait_log_lines(5).len(), 5);
}

#[test]
fn an_unrelated_ca_is_rejected_as_a_certificate_error() {
    let nginx = nginx();
    let pki = nginx.pki();
    let s = Session::builder()
        .add_root_certificates_pem(&pem(&pki.ca2_pem))
        .build()
        .unwrap();
    let err = fetch(&s, &nginx.https_url("s.txt")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    let s = Session::builder()
        .tls(TlsSettings {
            extra_ca_pem: Some(pem(&pki.ca2_pem)),
            only_extra_roots: true,
            ..TlsSettings::default()
        })
        .build()
        .unwrap();
    let err = fetch(&s, &nginx.https_url("s.txt")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    // Nothing reached nginx's HTTP layer.
    assert!(nginx.access_log().is_empty(), "{:#?}", nginx.access_log());
}

#[test]
fn webpki_roots_alone_reject_the_test_ca() {
    let nginx = nginx();
    let s = Session::builder().build().unwrap();
    for url in [nginx.https_url("s.txt"), nginx.https_url_ip("s.txt")] {
        let err = fetch(&s, &url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Certificate, "{url}: {err}");
    }
    // Failed handshakes leave nothing in the pool.
    assert_eq!(s.idle_connections(), 0);
    assert!(nginx.access_log().is_empty());
}

#[test]
fn danger_accept_invalid_certs_accepts() {
    let nginx = nginx();
    let s = Session::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    assert_eq!(fetch(&s, &nginx.https_url_ip("s.txt")).unwrap(), BODY);
    // Still TLS: nginx logged a protocol for both.
    let log = nginx.wait_log_lines(2);
    assert!(
        log.iter().all(|l| l.ssl_protocol.starts_with("TLSv1.")),
        "{log:#?}"
    );
}

#[test]
fn a_bad_ca_bundle_fails_at_build() {
    let err = Session::builder()
        .add_root_certificates_pem(b"this is not PEM\n")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    let err = Session::builder()
        .add_root_certificates_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
}

#[test]
fn connecting_by_ip_verifies_against_the_ip_san() {
    let nginx = nginx();
    let pki = nginx.pki();
    let s = Session::builder()
        .add_root_certificates_pem(&pem(&pki.ca_pem))
        .build()
        .unwrap();
    assert_eq!(fetch(&s, &nginx.https_url_ip("s.txt")).unwrap(), BODY);
    if nginx.has_ipv6() {
        let url = format!("https://[::1]:{}/s.txt", nginx.tls_port());
        assert_eq!(fetch(&s, &url).unwrap(), BODY);
    } else {
        assert!(!support::ipv6_loopback_available());
        eprintln!("no IPv6 loopback: only https://127.0.0.1 was checked");
    }
    // 127.0.0.1 and localhost are different pool keys even on the same port.
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    let log = nginx.wait_log_lines(2);
    assert_ne!(log[0].connection, log.last().unwrap().connection);
}

#[test]
fn sni_alpn_and_tls13_as_nginx_saw_them() {
    let nginx = nginx();
    let pki = nginx.pki();
    let s = Session::builder()
        .add_root_certificates_pem(&pem(&pki.ca_pem))
        .build()
        .unwrap();
    // By name: SNI carries it. ALPN offers http/1.1 only. TLS 1.3 is preferred.
    let info = fetch(&s, &nginx.https_url("tls-info")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&info),
        "sni=localhost alpn=http/1.1 proto=TLSv1.3"
    );
    // By address: no SNI (RFC 6066 §3 forbids IP literals in server_name).
    let info = fetch(&s, &nginx.https_url_ip("tls-info")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&info),
        "sni= alpn=http/1.1 proto=TLSv1.3"
    );
    // Plain HTTP: no TLS at all.
    let info = fetch(&s, &nginx.http_url("tls-info")).unwrap();
    assert_eq!(String::from_utf8_lossy(&info), "sni= alpn= proto=");

    let log = nginx.wait_log_lines(3);
    assert_eq!(log[0].ssl_protocol, "TLSv1.3");
    assert_eq!(log[1].ssl_protocol, "TLSv1.3");
    assert_eq!(log[2].ssl_protocol, "");
}

#[test]
fn tls12_only_server_still_works() {
    // OpenSSL's own cap overrides the `ssl_protocols TLSv1.2 TLSv1.3` the harness sets.
    let nginx = Nginx::start(
        NginxOptions::new()
            .file("s.txt", BODY)
            .server_conf("ssl_conf_command MaxProtocol TLSv1.2;"),
    );
    let pki = nginx.pki();
    let s = Session::builder()
        .add_root_certificates_pem(&pem(&pki.ca_pem))
        .build()
        .unwrap();
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[0].ssl_protocol, "TLSv1.2", "{log:#?}");
    assert_eq!(log[1].connection, log[0].connection);
}

/// A leaf signed by the harness's test CA, made with `openssl ca` so that its validity dates
/// can be set: `san` like `DNS:other.test`, dates as `YYYYMMDDHHMMSSZ`. Returns the temp dir
/// (keep it alive while nginx starts), the certificate and its key.
fn extra_leaf(san: &str, start: &str, end: &str) -> (TempDir, PathBuf, PathBuf) {
    let pki = support::pki();
    let dir = TempDir::new("tls-leaf");
    let d = dir.path();
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("serial"), "2001\n").unwrap();
    let cnf = format!(
        "[ca]\ndefault_ca = test\n\
         [test]\ndir = .\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n\
         [any]\ncommonName = supplied\n\
         [req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = extra leaf\n\
         [leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = {san}\n"
    );
    std::fs::write(d.join("ca.cnf"), cnf).unwrap();
    let run = |args: &[&str]| {
        let out = support::run_tool(Command::new("openssl").current_dir(d).args(args));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-config",
        "ca.cnf",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    let (ca, ca_key) = (
        pki.ca_pem.display().to_string(),
        pki.ca_key.display().to_string(),
    );
    run(&[
        "ca",
        "-batch",
        "-notext",
        "-config",
        "ca.cnf",
        "-cert",
        &ca,
        "-keyfile",
        &ca_key,
        "-extensions",
        "leaf",
        "-startdate",
        start,
        "-enddate",
        end,
        "-in",
        "leaf.csr",
        "-out",
        "leaf.pem",
    ]);
    let (cert, key) = (d.join("leaf.pem"), d.join("leaf.key"));
    (dir, cert, key)
}

/// nginx whose default HTTPS server on the TLS port (the one a client without SNI, i.e. one
/// connecting by IP, gets) presents `cert`; `https_url` (SNI `localhost`) still reaches the
/// harness's own server and its good leaf.
fn nginx_with_default_cert(cert: &std::path::Path, key: &std::path::Path) -> Nginx {
    let conf = format!(
        "server {{ listen 127.0.0.1:@TLS_PORT@ ssl; server_name _; \
         ssl_certificate \"{}\"; ssl_certificate_key \"{}\"; \
         location / {{ return 200 \"wrong server\\n\"; }} }}",
        cert.display(),
        key.display()
    );
    Nginx::start(NginxOptions::new().file("s.txt", BODY).http_conf(&conf))
}

fn trusting_session() -> Session {
    Session::builder()
        .add_root_certificates_pem(&pem(&support::pki().ca_pem))
        .build()
        .unwrap()
}

#[test]
fn a_trusted_leaf_for_another_name_is_rejected() {
    let (_dir, cert, key) = extra_leaf("DNS:other.test", "20200101000000Z", "20991231000000Z");
    let nginx = nginx_with_default_cert(&cert, &key);
    let s = trusting_session();
    let err = fetch(&s, &nginx.https_url_ip("s.txt")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    // The same nginx with SNI localhost serves the good leaf.
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
    // And verification off takes the wrong server's answer, proving the routing above.
    let insecure = Session::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    assert_eq!(
        fetch(&insecure, &nginx.https_url_ip("s.txt")).unwrap(),
        b"wrong server\n"
    );
}

#[test]
fn an_expired_leaf_is_rejected() {
    let (_dir, cert, key) = extra_leaf(
        "DNS:localhost, IP:127.0.0.1",
        "20200101000000Z",
        "20200201000000Z",
    );
    let nginx = nginx_with_default_cert(&cert, &key);
    let s = trusting_session();
    let err = fetch(&s, &nginx.https_url_ip("s.txt")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    assert_eq!(fetch(&s, &nginx.https_url("s.txt")).unwrap(), BODY);
}

#[test]
fn plain_http_to_the_tls_port_is_not_a_certificate_error() {
    // nginx answers plain HTTP on a TLS port with a 400 page; TLS to the HTTP port fails the
    // handshake. Neither is a certificate problem.
    let nginx = nginx();
    let s = trusting_session();
    let mut r = s
        .get(&format!("http://127.0.0.1:{}/s.txt", nginx.tls_port()))
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    drop(r.read_to_vec(LIMIT));
    let err = fetch(&s, &format!("https://localhost:{}/s.txt", nginx.port())).unwrap_err();
    assert_ne!(err.kind(), ErrorKind::Certificate, "{err}");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Tls | ErrorKind::Receive | ErrorKind::Connect
        ),
        "{:?}: {err}",
        err.kind()
    );
}
