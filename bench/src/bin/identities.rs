//! Identity keying under load: `threads` threads share one ferry `Session`, each sending
//! `requests` GETs with Basic credentials `user<i>:pass<i>`, where i is the thread index modulo
//! `identities`. Prints one JSON line with the requests per second.
//!
//! ```text
//! identities <url> <threads> <identities> <requests-per-thread>
//! ```
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: identities <url> <threads> <identities> <requests-per-thread>");
        std::process::exit(2);
    }
    let url = args[0].clone();
    let threads: usize = args[1].parse().expect("threads");
    let identities: usize = args[2].parse().expect("identities");
    let requests: usize = args[3].parse().expect("requests");
    let session = ferry::Session::builder().build().expect("session");
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let session = session.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let who = t % identities;
                let (user, pass) = (format!("user{who}"), format!("pass{who}"));
                let mut buf = vec![0u8; 16 * 1024];
                for _ in 0..requests {
                    let mut r = session
                        .get(&url)
                        .expect("url")
                        .basic_auth(&user, &pass)
                        .send()
                        .expect("request");
                    assert_eq!(r.status().as_u16(), 200, "{user}");
                    while std::io::Read::read(&mut r, &mut buf).expect("body") > 0 {}
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let secs = start.elapsed().as_secs_f64();
    let total = threads * requests;
    println!(
        "{{\"threads\":{threads},\"identities\":{identities},\"requests\":{total},\"secs\":{secs:.4},\"rps\":{:.0},\"connections\":{}}}",
        total as f64 / secs,
        session.connections_opened()
    );
}
