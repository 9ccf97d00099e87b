//! One HTTP client library in a loop, for `bench/run.py`.
//!
//! ```text
//! libbench <client> <mode> <url> <count> [out-path|-] [ca-pem]
//!   client: ferry | ureq | reqwest | hyper, or ferry-url: ferry given a pre-parsed `Url`
//!           (`Session::request_url`) instead of the URL string, to isolate URL parsing
//!   mode:   get      <count> GETs of <url> on one client (keep-alive), each body read to the end
//!                    through a 128 KiB buffer and discarded
//!           bulk     the same, meant for one large body (count 1): read and discarded
//!           bulkfile the same, each body written to <out-path> (truncated first)
//!   out-path: `-` (or absent) for none
//!   ca-pem:   a PEM file of extra trusted roots, for https URLs
//! ```
//!
//! Prints one JSON line: the client, mode, count, body bytes read, the time spent building the
//! client (`setup_s`) and the time spent in the request loop (`loop_s`). The driver takes GETs/s
//! and MB/s from `loop_s` and the peak RSS of the process from the OS. Each response's status
//! must be 200 and the run fails (exit 1) on any error, so a broken client never reports a rate.
//!
//! Every client gets the URL as a string and parses it per request (hyper: `str::parse::<Uri>`).
//! Every client is configured alike: HTTP/1.1 only, rustls 0.23 with the ring provider, no
//! compression, no proxies, the given CA as the only extra root.
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

/// The size of the buffer a blocking client's body is read into.
const BUF: usize = 128 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where bodies go.
enum Sink {
    Discard,
    File(File),
}

impl Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Discard => {
                std::hint::black_box(data);
                Ok(())
            }
            Sink::File(f) => f.write_all(data),
        }
    }
}

struct Args {
    client: String,
    mode: String,
    url: String,
    count: u64,
    out: Option<String>,
    ca_pem: Option<Vec<u8>>,
}

fn usage() -> ! {
    eprintln!(
        "usage: libbench <ferry|ferry-url|ureq|reqwest|hyper> <get|bulk|bulkfile> <url> <count> \
         [out-path|-] [ca-pem]"
    );
    std::process::exit(2);
}

fn parse_args() -> Result<Args, BoxError> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 || a.len() > 6 {
        usage();
    }
    let out = a.get(4).filter(|s| s.as_str() != "-" && !s.is_empty()).cloned();
    let ca_pem = match a.get(5).filter(|s| s.as_str() != "-" && !s.is_empty()) {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("reading {p}: {e}"))?),
        None => None,
    };
    let mode = a[1].clone();
    if !matches!(mode.as_str(), "get" | "bulk" | "bulkfile") {
        usage();
    }
    if mode == "bulkfile" && out.is_none() {
        return Err("bulkfile needs an out-path".into());
    }
    Ok(Args {
        client: a[0].clone(),
        mode,
        url: a[2].clone(),
        count: a[3].parse().map_err(|e| format!("count {:?}: {e}", a[3]))?,
        out,
        ca_pem,
    })
}

fn open_sink(args: &Args) -> Result<Sink, BoxError> {
    Ok(match (&args.mode[..], &args.out) {
        ("bulkfile", Some(p)) => Sink::File(File::create(p)?),
        _ => Sink::Discard,
    })
}

/// Reads `r` to the end through `buf` into `sink`; returns the byte count.
fn drain(r: &mut impl Read, buf: &mut [u8], sink: &mut Sink) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                sink.write(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Times of one run.
struct Report {
    setup_s: f64,
    loop_s: f64,
    bytes: u64,
}

fn run_ferry(args: &Args, sink: &mut Sink, preparsed: bool) -> Result<Report, BoxError> {
    let t0 = Instant::now();
    let mut b = ferry::Session::builder();
    if let Some(pem) = &args.ca_pem {
        b = b.add_root_certificates_pem(pem);
    }
    let session = b.build()?;
    let url = ferry::Url::parse(&args.url)?;
    let mut buf = vec![0u8; BUF];
    let t1 = Instant::now();
    let mut bytes = 0;
    for _ in 0..args.count {
        let req = if preparsed {
            session.request_url(ferry::Method::GET, url.clone())
        } else {
            session.get(&args.url)?
        };
        let mut resp = req.send()?;
        if resp.status().as_u16() != 200 {
            return Err(format!("status {}", resp.status()).into());
        }
        bytes += drain(&mut resp, &mut buf, sink)?;
    }
    Ok(Report {
        setup_s: (t1 - t0).as_secs_f64(),
        loop_s: t1.elapsed().as_secs_f64(),
        bytes,
    })
}

fn run_ureq(args: &Args, sink: &mut Sink) -> Result<Report, BoxError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let t0 = Instant::now();
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if let Some(pem) = &args.ca_pem {
        let cert = Certificate::from_pem(pem)?;
        tls = tls.root_certs(RootCerts::new_with_certs(&[cert]));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .into();
    let mut buf = vec![0u8; BUF];
    let t1 = Instant::now();
    let mut bytes = 0;
    for _ in 0..args.count {
        let mut resp = agent.get(&args.url).call()?;
        if resp.status().as_u16() != 200 {
            return Err(format!("status {}", resp.status()).into());
        }
        let mut r = resp.body_mut().as_reader();
        bytes += drain(&mut r, &mut buf, sink)?;
    }
    Ok(Report {
        setup_s: (t1 - t0).as_secs_f64(),
        loop_s: t1.elapsed().as_secs_f64(),
        bytes,
    })
}

fn run_reqwest(args: &Args, sink: &mut Sink) -> Result<Report, BoxError> {
    let t0 = Instant::now();
    let mut b = reqwest::blocking::Client::builder()
        .no_proxy()
        .http1_only()
        .use_rustls_tls();
    if let Some(pem) = &args.ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    let client = b.build()?;
    let mut buf = vec![0u8; BUF];
    let t1 = Instant::now();
    let mut bytes = 0;
    for _ in 0..args.count {
        let mut resp = client.get(&args.url).send()?;
        if resp.status().as_u16() != 200 {
            return Err(format!("status {}", resp.status()).into());
        }
        bytes += drain(&mut resp, &mut buf, sink)?;
    }
    Ok(Report {
        setup_s: (t1 - t0).as_secs_f64(),
        loop_s: t1.elapsed().as_secs_f64(),
        bytes,
    })
}

fn run_hyper(args: &Args, sink: &mut Sink) -> Result<Report, BoxError> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = &args.ca_pem {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            roots.add(cert?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let t1 = Instant::now();
    let bytes = rt.block_on(async {
        let mut bytes = 0u64;
        for _ in 0..args.count {
            // Parsed per request, as the other clients parse the URL string per request.
            let uri: hyper::Uri = args.url.parse()?;
            let resp = client.get(uri).await?;
            if resp.status().as_u16() != 200 {
                return Err::<u64, BoxError>(format!("status {}", resp.status()).into());
            }
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    sink.write(&data)?;
                    bytes += data.len() as u64;
                }
            }
        }
        Ok(bytes)
    })?;
    Ok(Report {
        setup_s: (t1 - t0).as_secs_f64(),
        loop_s: t1.elapsed().as_secs_f64(),
        bytes,
    })
}

fn main() {
    let result = parse_args().and_then(|args| {
        let mut sink = open_sink(&args)?;
        let report = match args.client.as_str() {
            "ferry" => run_ferry(&args, &mut sink, false)?,
            "ferry-url" => run_ferry(&args, &mut sink, true)?,
            "ureq" => run_ureq(&args, &mut sink)?,
            "reqwest" => run_reqwest(&args, &mut sink)?,
            "hyper" => run_hyper(&args, &mut sink)?,
            other => return Err(format!("unknown client {other:?}").into()),
        };
        if let Sink::File(f) = &mut sink {
            f.flush()?;
        }
        Ok((args, report))
    });
    match result {
        Ok((args, r)) => println!(
            "{{\"client\":\"{}\",\"mode\":\"{}\",\"count\":{},\"bytes\":{},\"setup_s\":{:.6},\"loop_s\":{:.6}}}",
            args.client, args.mode, args.count, r.bytes, r.setup_s, r.loop_s
        ),
        Err(e) => {
            eprintln!("libbench: {e}");
            std::process::exit(1);
        }
    }
}
