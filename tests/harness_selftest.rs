//! Tests of the test harness itself (`tests/support`), with no ferry code involved: the nginx
//! instance, the test PKI, the pattern files and the scripted fault server, checked with curl,
//! openssl and std sockets. If these fail, every end-to-end suite's results are suspect.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{large_file_bytes, pki, run_tool, LogLine, Nginx, NginxOptions, ScriptServer, Step};

/// Runs curl (bounded by `--max-time`) and returns (exit code, stdout, stderr).
fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = run_tool(
        Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "20",
                "--noproxy",
                "*",
            ])
            .args(args),
    );
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl that must succeed; returns stdout.
fn curl_ok(args: &[&str]) -> Vec<u8> {
    let (code, stdout, stderr) = curl(args);
    assert_eq!(code, 0, "curl {args:?} failed: {stderr}");
    stdout
}

#[test]
fn nginx_serves_a_file_over_http_and_https_and_logs_each_request() {
    let nginx = Nginx::start(NginxOptions::new().file("hello.txt", "hello, ferry\n"));
    let ca = nginx.pki().ca_pem.display().to_string();
    let common = [
        "-H",
        "X-Test: tag-1",
        "-H",
        "Authorization: Basic dXNlcjpwYXNz",
        "-H",
        "Cookie: a=1; b=\"two\"",
        "-A",
        "selftest-agent/1.0",
    ];
    let http = nginx.http_url("/hello.txt");
    let mut args = common.to_vec();
    args.push(&http);
    assert_eq!(curl_ok(&args), b"hello, ferry\n");

    let https = nginx.https_url("hello.txt");
    let mut args = common.to_vec();
    args.extend(["--cacert", &ca, &https]);
    assert_eq!(curl_ok(&args), b"hello, ferry\n");

    let log = nginx.wait_log_lines(2);
    assert_eq!(log.len(), 2, "{log:#?}");
    for (line, port, tls) in [
        (&log[0], nginx.port(), false),
        (&log[1], nginx.tls_port(), true),
    ] {
        assert_eq!(line.method, "GET");
        assert_eq!(line.uri, "/hello.txt");
        assert_eq!(line.status, 200);
        assert_eq!(line.bytes, 13);
        assert_eq!(line.authorization, "Basic dXNlcjpwYXNz");
        assert_eq!(
            line.cookie, "a=1; b=\"two\"",
            "escape=json must round-trip quotes"
        );
        assert_eq!(line.proxy_authorization, "");
        assert_eq!(line.x_test, "tag-1");
        assert_eq!(line.user_agent, "selftest-agent/1.0");
        assert_eq!(line.protocol, "HTTP/1.1");
        assert_eq!(line.server_port, port);
        assert_eq!(line.connection_requests, 1);
        assert_eq!(line.range, "");
        if tls {
            assert!(line.ssl_protocol.starts_with("TLSv1."), "{line:?}");
            assert_eq!(line.host, format!("localhost:{port}"));
        } else {
            assert_eq!(line.ssl_protocol, "");
            assert_eq!(line.host, format!("127.0.0.1:{port}"));
        }
    }
    assert_ne!(log[0].connection, log[1].connection);
}

#[test]
fn two_requests_in_one_curl_share_a_connection() {
    let nginx = Nginx::start(NginxOptions::new().file("a.txt", "A").file("b.txt", "B"));
    let body = curl_ok(&[&nginx.http_url("a.txt"), &nginx.http_url("b.txt")]);
    assert_eq!(body, b"AB");
    let log = nginx.wait_log_lines(2);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].connection, log[1].connection, "{log:#?}");
    assert_eq!(
        (log[0].connection_requests, log[1].connection_requests),
        (1, 2)
    );
    assert_eq!(
        (log[0].uri.as_str(), log[1].uri.as_str()),
        ("/a.txt", "/b.txt")
    );

    // The same over TLS 1.2 and 1.3.
    let ca = nginx.pki().ca_pem.display().to_string();
    for max in ["1.2", "1.3"] {
        let body = curl_ok(&[
            "--cacert",
            &ca,
            "--tlsv1.2",
            "--tls-max",
            max,
            &nginx.https_url("a.txt"),
            &nginx.https_url("b.txt"),
        ]);
        assert_eq!(body, b"AB");
    }
    let log = nginx.wait_log_lines(6);
    assert_eq!(log.len(), 6);
    for (pair, proto) in log[2..].chunks(2).zip(["TLSv1.2", "TLSv1.3"]) {
        assert_eq!(pair[0].connection, pair[1].connection);
        assert_eq!(
            (pair[0].connection_requests, pair[1].connection_requests),
            (1, 2)
        );
        assert_eq!(pair[0].ssl_protocol, proto);
        assert_eq!(pair[1].ssl_protocol, proto);
    }
}

#[test]
fn https_is_refused_with_the_unrelated_ca_and_accepted_by_ip() {
    let nginx = Nginx::start(NginxOptions::new().file("x", "x"));
    let pki = nginx.pki();
    let (code, _, stderr) = curl(&[
        "--cacert",
        &pki.ca2_pem.display().to_string(),
        &nginx.https_url("x"),
    ]);
    assert_eq!(
        code, 60,
        "curl should fail certificate verification, got {code}: {stderr}"
    );
    let body = curl_ok(&[
        "--cacert",
        &pki.ca_pem.display().to_string(),
        &nginx.https_url_ip("x"),
    ]);
    assert_eq!(body, b"x");
}

#[test]
fn nginx_built_in_locations() {
    let nginx = Nginx::start(
        NginxOptions::new()
            .redirect("/go", 302, "@HTTPS@/target")
            .redirect("/go-rel", 307, "/status/200")
            .server_conf("location = /custom { return 200 \"port @PORT@\"; }"),
    );
    for &code in support::nginx::STATUS_CODES {
        let (rc, out, err) = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &nginx.http_url(&format!("/status/{code}")),
        ]);
        assert_eq!(rc, 0, "{err}");
        assert_eq!(String::from_utf8_lossy(&out), code.to_string());
    }
    let head = curl_ok(&["-D", "-", "-o", "/dev/null", &nginx.http_url("go")]);
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    let location = format!(
        "Location: https://localhost:{}/target\r\n",
        nginx.tls_port()
    );
    assert!(head.contains(&location), "{head}");
    let body = curl_ok(&["-L", &nginx.http_url("go-rel")]);
    assert_eq!(body, b"status 200\n");
    assert_eq!(
        curl_ok(&[&nginx.http_url("custom")]),
        format!("port {}", nginx.port()).as_bytes()
    );

    let head = curl_ok(&["-D", "-", "-o", "/dev/null", &nginx.http_url("close")]);
    assert!(String::from_utf8_lossy(&head).contains("Connection: close\r\n"));

    // Echo module: the raw request head, and the body back.
    let echoed = curl_ok(&["-H", "X-Test: echo", &nginx.http_url("echo/head")]);
    let echoed = String::from_utf8_lossy(&echoed);
    assert!(
        echoed.starts_with("GET /echo/head HTTP/1.1\r\n"),
        "{echoed:?}"
    );
    assert!(echoed.contains("\r\nX-Test: echo\r\n"), "{echoed:?}");
    assert!(echoed.ends_with("\r\n\r\n"), "{echoed:?}");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = nginx.dir().join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let upload = format!("@{}", file.display());
    let echoed = curl_ok(&["--data-binary", &upload, &nginx.http_url("echo/body")]);
    assert!(
        echoed == body,
        "echoed body differs ({} bytes back)",
        echoed.len()
    );

    let head = curl_ok(&["-D", "-", "-o", "/dev/null", &nginx.http_url("chunked")]);
    assert!(String::from_utf8_lossy(&head).contains("Transfer-Encoding: chunked\r\n"));
    assert_eq!(
        curl_ok(&[&nginx.http_url("chunked")]),
        b"chunk one\nchunk two\n"
    );

    let t = Instant::now();
    assert_eq!(curl_ok(&[&nginx.http_url("slow")]), b"start\nend\n");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "/slow took {:?}",
        t.elapsed()
    );

    let log = nginx.access_log();
    let post = log
        .iter()
        .find(|l| l.uri == "/echo/body")
        .expect("echo/body logged");
    assert_eq!(post.method, "POST");
    assert_eq!(post.content_length, "200000");
}

#[test]
fn large_file_matches_the_pattern_whole_and_by_range() {
    const SIZE: u64 = 8 * 1024 * 1024 + 12_345;
    let nginx = Nginx::start(NginxOptions::new().large_file("big/blob.bin", SIZE));
    let whole = curl_ok(&[&nginx.http_url("big/blob.bin")]);
    assert_eq!(whole.len() as u64, SIZE);
    assert!(
        whole == large_file_bytes("big/blob.bin", 0, SIZE as usize),
        "body differs"
    );
    assert_eq!(
        support::fnv1a64(&whole),
        support::large_file_fnv1a64("big/blob.bin", SIZE)
    );
    // 1 MiB blocks differ from each other.
    assert_ne!(whole[..1024], whole[1 << 20..(1 << 20) + 1024]);

    let part = curl_ok(&["-r", "1048000-1049999", &nginx.http_url("big/blob.bin")]);
    assert_eq!(part, large_file_bytes("big/blob.bin", 1_048_000, 2000));
    let log = nginx.wait_log_lines(2);
    assert_eq!(log[1].status, 206);
    assert_eq!(log[1].range, "bytes=1048000-1049999");
}

#[test]
fn pattern_writes_64_mib_quickly() {
    let dir = support::TempDir::new("pattern");
    let path = dir.join("f");
    let t = Instant::now();
    support::pattern::write_large_file(&path, "f", 64 << 20).unwrap();
    let took = t.elapsed();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 << 20);
    // Generous: the aim is "seconds, not minutes" even in a debug build on a busy machine.
    assert!(took < Duration::from_secs(20), "64 MiB took {took:?}");
}

#[test]
fn nginx_listens_on_ipv6_loopback_when_the_machine_has_it() {
    let nginx = Nginx::start(NginxOptions::new().file("six", "6"));
    assert_eq!(nginx.has_ipv6(), support::ipv6_loopback_available());
    if nginx.has_ipv6() {
        assert_eq!(curl_ok(&["-g", &nginx.http_url_v6("six")]), b"6");
        let ca = nginx.pki().ca_pem.display().to_string();
        let url = format!("https://[::1]:{}/six", nginx.tls_port());
        assert_eq!(curl_ok(&["-g", "--cacert", &ca, &url]), b"6");
    } else {
        eprintln!("no IPv6 loopback on this machine: only the IPv4 listeners were checked");
    }
}

#[test]
fn nginx_stops_when_dropped() {
    let nginx = Nginx::start(NginxOptions::new());
    let (port, tls_port) = (nginx.port(), nginx.tls_port());
    let dir = nginx.dir().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(nginx);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "HTTP port still open"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", tls_port)).is_err(),
        "HTTPS port still open"
    );
    assert!(!dir.exists(), "temp dir not removed");
}

#[test]
fn nginx_start_failure_is_loud_and_shows_the_error_log() {
    let result = std::panic::catch_unwind(|| {
        Nginx::start(NginxOptions::new().server_conf("this_is_not_a_directive on;"))
    });
    let err = result.expect_err("nginx must refuse the config");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(msg.contains("nginx exited during start"), "{msg}");
    assert!(msg.contains("this_is_not_a_directive"), "{msg}");
}

#[test]
fn log_line_parsing_undoes_json_escapes() {
    let line = "7\t2\tGET\t/a?b=c\t200\t5\tBasic x\\\"y\\\\z\t\t\tt\\u0001\tTLSv1.3\tua\\tx\t\
                localhost:1\tbytes=0-1\t\"e\"\tHTTP/1.1\t443\t99\t\t\tal\\\"ice";
    let l = LogLine::parse(line).unwrap();
    assert_eq!(
        (l.connection, l.connection_requests, l.status, l.bytes),
        (7, 2, 200, 5)
    );
    assert_eq!(l.authorization, "Basic x\"y\\z");
    assert_eq!(l.cookie, "");
    assert_eq!(l.x_test, "t\u{1}");
    assert_eq!(l.user_agent, "ua\tx");
    assert_eq!(l.server_port, 443);
    assert_eq!(l.remote_user, "al\"ice");
    assert!(LogLine::parse("1\t2\t3").is_err());
}

#[test]
fn pki_ca_verifies_the_leaf_and_the_unrelated_ca_does_not() {
    let pki = pki();
    let verify = |ca: &std::path::Path, cert: &std::path::Path| {
        run_tool(
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca)
                .arg(cert),
        )
    };
    let ok = verify(&pki.ca_pem, &pki.leaf_pem);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = verify(&pki.ca_pem, &pki.client_pem);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = verify(&pki.ca2_pem, &pki.leaf_pem);
    assert!(
        !bad.status.success(),
        "the unrelated CA must not verify the leaf"
    );

    let out = run_tool(
        Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-ext",
                "subjectAltName,extendedKeyUsage",
                "-in",
            ])
            .arg(&pki.leaf_pem),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(want), "leaf lacks {want}: {text}");
    }
    // Cached: the same files for every caller in this binary.
    assert!(std::ptr::eq(pki, support::pki()));
}

fn read_all(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn script_server_round_trip_records_received_bytes() {
    let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    let server = ScriptServer::start(vec![vec![
        Step::head_starts_with("GET /a HTTP/1.1\r\n"),
        Step::expect("BODY"),
        Step::send_split("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 3),
        Step::Close,
    ]]);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(request).unwrap();
    let response = read_all(&mut c).unwrap();
    assert_eq!(response, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(server.connections_accepted(), 1);
    assert_eq!(server.received(0), request);
    server.finish().unwrap();
}

#[test]
fn script_server_reports_a_mismatch() {
    let server = ScriptServer::start(vec![vec![Step::expect("hello"), Step::send("never")]]);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"help!").unwrap();
    let _ = read_all(&mut c);
    let err = server.finish().unwrap_err();
    assert!(err.contains("mismatch at byte 3"), "{err}");
}

#[test]
fn script_server_runs_scripts_per_connection_and_flags_extra_and_missing_ones() {
    let server = ScriptServer::start(vec![
        vec![Step::expect("one"), Step::send("1")],
        vec![Step::expect("two"), Step::send("2")],
    ]);
    // Two connections open at once: each gets its own script, in accept order.
    let mut a = TcpStream::connect(server.addr()).unwrap();
    let ok = support::poll(Duration::from_secs(2), Duration::from_millis(5), || {
        (server.connections_accepted() == 1).then_some(())
    });
    assert!(ok.is_some());
    let mut b = TcpStream::connect(server.addr()).unwrap();
    b.write_all(b"two").unwrap();
    a.write_all(b"one").unwrap();
    assert_eq!(read_all(&mut b).unwrap(), b"2");
    assert_eq!(read_all(&mut a).unwrap(), b"1");
    let _extra = TcpStream::connect(server.addr()).unwrap();
    let ok = support::poll(Duration::from_secs(2), Duration::from_millis(5), || {
        (server.connections_accepted() == 3).then_some(())
    });
    assert!(ok.is_some());
    let err = server.finish().unwrap_err();
    assert!(err.contains("unexpected connection #2"), "{err}");

    let server = ScriptServer::start(vec![vec![Step::Close], vec![Step::Close]]);
    let _ = TcpStream::connect(server.addr()).unwrap();
    let err = server.finish().unwrap_err();
    assert!(
        err.contains("expected 2 connections, the client made 1"),
        "{err}"
    );
}

#[test]
fn script_server_reset_sends_rst() {
    let server = ScriptServer::start(vec![vec![
        Step::head_starts_with("GET"),
        Step::send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
        Step::peek_any_head(),
        Step::Reset,
    ]]);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // A pipelined second request, left unread by PeekHead, makes the close an RST.
    c.write_all(b"GET /2 HTTP/1.1\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match c.read(&mut buf) {
            Ok(0) => panic!("got FIN, expected RST"),
            Ok(_) => assert!(Instant::now() < deadline, "no reset within 5 s"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert_eq!(
        server.received(0),
        b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
    );
    server.finish().unwrap();
}

#[test]
fn script_server_times_out_instead_of_hanging() {
    let server = ScriptServer::start(vec![vec![Step::expect("never sent")]]);
    let _c = TcpStream::connect(server.addr()).unwrap();
    let t = Instant::now();
    let err = server.finish().unwrap_err();
    assert!(err.contains("read timed out"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn script_server_drop_is_prompt_with_a_blocked_script() {
    let server = ScriptServer::start(vec![vec![Step::expect("never sent")]]);
    let _c = TcpStream::connect(server.addr()).unwrap();
    let ok = support::poll(Duration::from_secs(2), Duration::from_millis(5), || {
        (server.connections_accepted() == 1).then_some(())
    });
    assert!(ok.is_some());
    let t = Instant::now();
    // The script fails (its socket is shut down), which would panic in Drop; finish() instead.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(server)));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drop took {:?}",
        t.elapsed()
    );
    let _ = result;
}

#[test]
fn script_server_body_length_paced_send_and_read_to_eof() {
    let server = ScriptServer::start(vec![vec![
        Step::head_contains(&["POST /up HTTP/1.1\r\n", "\r\nContent-Length: 5\r\n"]),
        Step::ExpectLen(5),
        Step::SendPaced {
            bytes: b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            chunk: 10,
            pause: Duration::from_millis(5),
        },
        Step::ReadToEof,
    ]]);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde")
        .unwrap();
    let mut got = vec![0u8; 27];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, b"HTTP/1.1 204 No Content\r\n\r\n");
    c.write_all(b"trailing").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut c).unwrap(), b"");
    assert!(server.received(0).ends_with(b"abcdetrailing"));
    server.finish().unwrap();
}
