//! The job model: ids, priorities, ranges, files, settings validation, retry and notify rules.

use std::path::PathBuf;

use ferry_transfer::job::{
    validate_headers, validate_ranges, AuthScheme, ByteRange, CredentialTarget, FileSpec, Job,
    JobCredentials, JobError, JobId, NotifyCommand, Priority, ProxyChoice, RedirectPolicy, Secret,
    ValidationError, Validator, DEFAULT_MIN_RETRY_DELAY_SECS, DEFAULT_NO_PROGRESS_TIMEOUT_SECS,
    MAX_FILES_PER_JOB, MAX_RANGES_PER_FILE,
};
use ferry_transfer::state::{State, Verb};
use url::Url;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn id(n: u8) -> JobId {
    JobId::from_bytes([n; 16])
}

fn job_with_file() -> Job {
    let mut j = Job::new(id(1), 1000, "nightly", 100).unwrap();
    j.add_file(
        FileSpec::new(url("https://example.test/a.iso"), "/srv/a.iso").unwrap(),
        100,
    )
    .unwrap();
    j
}

fn r(offset: u64, len: Option<u64>) -> ByteRange {
    ByteRange { offset, len }
}

#[test]
fn job_ids_are_random_and_round_trip() {
    let a = JobId::random().unwrap();
    let b = JobId::random().unwrap();
    assert_ne!(a, b);
    let s = a.to_string();
    assert_eq!(s.len(), 38);
    assert!(s.starts_with('{') && s.ends_with('}'));
    assert_eq!(s.parse::<JobId>().unwrap(), a);
    assert_eq!(s.to_lowercase().parse::<JobId>().unwrap(), a);
    assert_eq!(a.simple().parse::<JobId>().unwrap(), a);
    // Version-4 GUID layout.
    assert_eq!(a.as_bytes()[6] >> 4, 4);
    assert_eq!(a.as_bytes()[8] >> 6, 0b10);
    let e = "not-an-id".parse::<JobId>().unwrap_err();
    assert!(e.to_string().contains("bad job id 'not-an-id'"), "{e}");
}

#[test]
fn priorities_order_and_parse() {
    assert!(Priority::Foreground < Priority::High);
    assert!(Priority::High < Priority::Normal);
    assert!(Priority::Normal < Priority::Low);
    let mut v = vec![
        Priority::Low,
        Priority::Foreground,
        Priority::Normal,
        Priority::High,
    ];
    v.sort();
    assert_eq!(v, Priority::ALL);
    for p in Priority::ALL {
        assert_eq!(p.to_string().parse::<Priority>().unwrap(), p);
        assert_eq!(p.to_string().to_lowercase().parse::<Priority>().unwrap(), p);
    }
    assert_eq!(
        "Foreground".parse::<Priority>().unwrap(),
        Priority::Foreground
    );
    assert_eq!(Priority::default(), Priority::Normal);
    assert!(!Priority::Foreground.is_background() && Priority::Low.is_background());
    let e = "urgent".parse::<Priority>().unwrap_err().to_string();
    assert!(e.contains("FOREGROUND, HIGH, NORMAL or LOW"), "{e}");
}

#[test]
fn redirect_policy_parses() {
    assert_eq!("allow".parse(), Ok(RedirectPolicy::Allow));
    assert_eq!("ALLOW_REPORT".parse(), Ok(RedirectPolicy::AllowReport));
    assert_eq!("disallow".parse(), Ok(RedirectPolicy::Disallow));
    assert!("follow".parse::<RedirectPolicy>().is_err());
    assert_eq!(RedirectPolicy::default(), RedirectPolicy::Allow);
}

#[test]
fn byte_ranges_parse_and_overlap() {
    assert_eq!("100:200".parse(), Ok(r(100, Some(200))));
    assert_eq!("5:EOF".parse(), Ok(r(5, None)));
    for bad in [
        "",
        "1",
        ":5",
        "1:",
        "-1:5",
        "1:-5",
        "a:b",
        "1:0",
        "18446744073709551615:2",
    ] {
        assert!(bad.parse::<ByteRange>().is_err(), "{bad}");
    }
    assert_eq!(r(100, Some(200)).to_string(), "100:200");
    assert_eq!(r(7, None).to_string(), "7:eof");
    assert!(r(0, Some(10)).overlaps(&r(9, Some(1))));
    assert!(!r(0, Some(10)).overlaps(&r(10, Some(1))));
    assert!(r(50, None).overlaps(&r(900, Some(1))));
    assert!(!r(50, None).overlaps(&r(0, Some(50))));
}

#[test]
fn ranges_keep_order_and_refuse_overlaps() {
    let given = vec![r(100, Some(100)), r(900, Some(100)), r(400, Some(100))];
    let f = FileSpec::with_ranges(url("http://h.test/f"), "/tmp/f", given.clone()).unwrap();
    assert_eq!(f.ranges(), given.as_slice());
    assert_eq!(f.ranges_len(), Some(300));

    let e = validate_ranges(&[r(100, Some(100)), r(900, Some(100)), r(150, Some(10))]).unwrap_err();
    assert_eq!(
        e,
        ValidationError::OverlappingRanges {
            first: (0, r(100, Some(100))),
            second: (2, r(150, Some(10)))
        }
    );
    assert_eq!(
        e.to_string(),
        "byte range #2 (150:10) overlaps byte range #0 (100:100): ranges must not overlap"
    );
    assert!(
        validate_ranges(&[r(0, Some(1)), r(0, Some(1))]).is_err(),
        "duplicates"
    );
    assert!(
        validate_ranges(&[r(1000, None), r(2000, Some(5))]).is_err(),
        "open range"
    );
    let e = validate_ranges(&[r(0, Some(5)), r(10, Some(0))]).unwrap_err();
    assert!(
        e.to_string().contains("#1") && e.to_string().contains("zero"),
        "{e}"
    );
    let many: Vec<ByteRange> = (0..=MAX_RANGES_PER_FILE as u64)
        .map(|i| r(i * 10, Some(1)))
        .collect();
    assert!(matches!(
        validate_ranges(&many),
        Err(ValidationError::TooManyRanges { .. })
    ));
    assert!(validate_ranges(&many[..MAX_RANGES_PER_FILE]).is_ok());
    assert!(
        validate_ranges(&[r(u64::MAX - 1, Some(5))]).is_err(),
        "overflow"
    );
}

#[test]
fn files_validate_source_and_destination() {
    let ok = |u: &str, p: &str| FileSpec::new(url(u), p);
    assert!(ok("https://h.test/a", "/a/b").is_ok());
    for (u, p, why) in [
        ("ftp://h.test/a", "/a/b", "only http and https"),
        ("http://user:pw@h.test/a", "/a/b", "credentials in the URL"),
        ("https://h.test/a", "relative/b", "must be absolute"),
        ("https://h.test/a", "/a/b/", "names a directory"),
        ("https://h.test/a", "/", "names a directory"),
        ("https://h.test/a", "/a/..", "names a directory"),
        ("https://h.test/a", "/a/b\0c", "NUL"),
    ] {
        let e = ok(u, p).unwrap_err().to_string();
        assert!(e.contains(why), "{u} {p:?}: {e}");
        assert!(!e.contains(":pw@"), "password leaked: {e}");
    }
    let long = format!("https://h.test/{}", "a".repeat(2200));
    assert!(ok(&long, "/x").unwrap_err().to_string().contains("2200"));
}

#[test]
fn new_jobs_have_bits_defaults() {
    let j = Job::new(id(2), 1000, "name", 42).unwrap();
    assert_eq!(j.state(), State::Suspended);
    assert_eq!(j.priority(), Priority::Normal);
    assert_eq!(j.min_retry_delay_secs(), DEFAULT_MIN_RETRY_DELAY_SECS);
    assert_eq!(j.min_retry_delay_secs(), 600);
    assert_eq!(
        j.no_progress_timeout_secs(),
        DEFAULT_NO_PROGRESS_TIMEOUT_SECS
    );
    assert_eq!(j.no_progress_timeout_secs(), 1_209_600);
    assert_eq!((j.created(), j.modified(), j.completed()), (42, 42, None));
    assert_eq!(j.proxy(), &ProxyChoice::Session);
    assert_eq!(j.redirect_policy(), RedirectPolicy::Allow);
    assert!(!j.allow_https_to_http());
    assert_eq!(j.owner_uid(), 1000);
    for bad in ["", "  ", "a\nb", "a\u{1b}[31m", &"x".repeat(257)] {
        assert!(Job::new(id(2), 1, bad, 0).is_err(), "{bad:?}");
    }
}

#[test]
fn retry_delay_is_clamped_to_five_seconds() {
    let mut j = job_with_file();
    assert_eq!(j.set_min_retry_delay_secs(1, 200).unwrap(), 5);
    assert_eq!(j.min_retry_delay_secs(), 5);
    assert_eq!(j.set_min_retry_delay_secs(0, 200).unwrap(), 5);
    assert_eq!(j.set_min_retry_delay_secs(60, 200).unwrap(), 60);
    assert_eq!(j.modified(), 200);
}

#[test]
fn headers_are_validated() {
    let h = |n: &str, v: &str| vec![(n.to_owned(), v.to_owned())];
    assert!(validate_headers(&h("X-Token", "abc\tdef")).is_ok());
    for (n, v, why) in [
        ("X-A", "a\r\nInjected: 1", "CR, LF or NUL"),
        ("X-A", "a\nb", "CR, LF or NUL"),
        ("X-A", "a\0b", "CR, LF or NUL"),
        ("X-A", "a\u{7f}", "control character"),
        ("Bad Name", "v", "HTTP token"),
        ("X:A", "v", "HTTP token"),
        ("", "v", "empty"),
        ("Range", "bytes=0-", "set by ferry"),
        ("if-range", "x", "set by ferry"),
        ("Host", "evil", "set by ferry"),
    ] {
        let e = validate_headers(&h(n, v)).unwrap_err().to_string();
        assert!(e.contains(why), "{n}: {v:?}: {e}");
        assert!(e.contains("#0"), "{e}");
    }
    let mut j = job_with_file();
    assert!(j.set_custom_headers(h("X-A", "a\r\nb"), 1).is_err());
    assert!(j.custom_headers().is_empty());
    j.set_custom_headers(h("Authorization", "Bearer t"), 1)
        .unwrap();
    assert_eq!(j.custom_headers().len(), 1);
}

#[test]
fn notify_command_must_be_absolute() {
    assert!(NotifyCommand::new("/usr/bin/notify-send", vec!["done; rm -rf /".into()]).is_ok());
    for (p, args) in [
        ("notify-send", vec![]),
        ("./x", vec![]),
        ("", vec![]),
        ("/usr/bin/", vec![]),
        ("/bin/echo", vec!["a\0b".to_owned()]),
    ] {
        assert!(NotifyCommand::new(p, args).is_err(), "{p}");
    }
}

#[test]
fn secrets_are_never_printed() {
    let c = JobCredentials::new(
        CredentialTarget::Server,
        AuthScheme::Basic,
        "alice",
        Secret::new("hunter2-s3cret"),
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let mut j = job_with_file();
    j.set_credentials(c, 5).unwrap();
    assert!(!format!("{j:?}").contains("hunter2"));
    assert!(!format!("{j:#?}").contains("hunter2"));
    assert_eq!(
        j.credentials(CredentialTarget::Server)
            .unwrap()
            .secret
            .expose(),
        "hunter2-s3cret"
    );
    assert!(j.credentials(CredentialTarget::Proxy).is_none());
    let p = JobCredentials::new(
        CredentialTarget::Proxy,
        AuthScheme::Ntlm,
        "CORP\\bob",
        Secret::new("x"),
    )
    .unwrap();
    j.set_credentials(p, 6).unwrap();
    assert!(
        j.credentials(CredentialTarget::Server).is_some(),
        "both slots kept"
    );
    j.remove_credentials(CredentialTarget::Server, 7).unwrap();
    assert!(j.credentials(CredentialTarget::Server).is_none());

    for (scheme, user, secret) in [
        (AuthScheme::Basic, "", "x"),
        (AuthScheme::Basic, "a:b", "x"),
        (AuthScheme::Digest, "a\nb", "x"),
        (AuthScheme::Digest, "a", "x\r\n"),
        (AuthScheme::Bearer, "", ""),
    ] {
        assert!(
            JobCredentials::new(CredentialTarget::Server, scheme, user, Secret::new(secret))
                .is_err(),
            "{scheme} {user:?}"
        );
    }
    assert!(JobCredentials::new(
        CredentialTarget::Server,
        AuthScheme::Bearer,
        "",
        Secret::new("t")
    )
    .is_ok());
    assert_eq!("server".parse(), Ok(CredentialTarget::Server));
    assert_eq!("negotiate".parse(), Ok(AuthScheme::Negotiate));
}

#[test]
fn proxy_override_is_validated() {
    let mut j = job_with_file();
    assert!(j
        .set_proxy(
            ProxyChoice::Override {
                proxy: " ".into(),
                bypass: String::new()
            },
            1
        )
        .is_err());
    assert!(j
        .set_proxy(
            ProxyChoice::Override {
                proxy: "p:1\r\n".into(),
                bypass: String::new()
            },
            1
        )
        .is_err());
    j.set_proxy(
        ProxyChoice::Override {
            proxy: "http=p1:8080;https=p2:8443".into(),
            bypass: "<local>".into(),
        },
        1,
    )
    .unwrap();
    j.set_proxy(ProxyChoice::None, 2).unwrap();
    assert_eq!(j.proxy(), &ProxyChoice::None);
}

#[test]
fn files_are_added_only_while_suspended() {
    let mut j = job_with_file();
    let f = || FileSpec::new(url("https://example.test/b"), "/srv/b").unwrap();
    j.apply(Verb::Resume, 101).unwrap();
    let e = j.add_file(f(), 102).unwrap_err();
    assert!(matches!(e, ValidationError::Transition(_)));
    assert!(e.to_string().contains("suspend it first"), "{e}");
    j.apply(Verb::Suspend, 103).unwrap();
    assert_eq!(j.add_file(f(), 104).unwrap(), 1);
    let dup = FileSpec::new(url("https://example.test/c"), "/srv/a.iso").unwrap();
    let e = j.add_file(dup, 105).unwrap_err();
    assert_eq!(
        e.to_string(),
        "local path '/srv/a.iso' is already the destination of file 0 of this job"
    );
    for i in 2..MAX_FILES_PER_JOB {
        j.add_file(
            FileSpec::new(url("https://e.test/x"), format!("/srv/f{i}")).unwrap(),
            106,
        )
        .unwrap();
    }
    let e = j
        .add_file(
            FileSpec::new(url("https://e.test/x"), "/srv/last").unwrap(),
            107,
        )
        .unwrap_err();
    assert_eq!(e, ValidationError::TooManyFiles);
}

#[test]
fn resume_needs_a_file() {
    let mut j = Job::new(id(3), 1, "empty", 0).unwrap();
    assert_eq!(j.apply(Verb::Resume, 1), Err(ValidationError::NoFiles));
    assert_eq!(j.state(), State::Suspended);
}

#[test]
fn progress_accessors() {
    let mut j = job_with_file();
    j.add_file(
        FileSpec::new(url("https://example.test/b"), "/srv/b").unwrap(),
        1,
    )
    .unwrap();
    let p = j.progress();
    assert_eq!(
        (p.bytes_total, p.bytes_done, p.files_total, p.files_done),
        (None, 0, 2, 0)
    );
    j.file_mut(0).unwrap().bytes_total = Some(100);
    j.file_mut(0).unwrap().bytes_done = 100;
    j.file_mut(0).unwrap().completed = true;
    assert_eq!(j.bytes_total(), None, "unknown until every size is known");
    j.file_mut(1).unwrap().bytes_total = Some(50);
    j.file_mut(1).unwrap().bytes_done = 20;
    let p = j.progress();
    assert_eq!(
        (p.bytes_total, p.bytes_done, p.files_total, p.files_done),
        (Some(150), 120, 2, 1)
    );
    assert_eq!(j.current_file(), Some(1));
    assert!(j.file_mut(2).is_err());
}

fn running(j: &mut Job, now: u64) {
    j.apply(Verb::Resume, now).unwrap();
    j.apply(Verb::Start, now).unwrap();
    j.apply(Verb::Connected, now).unwrap();
}

fn e503() -> JobError {
    JobError {
        status: Some(503),
        message: "Service Unavailable".into(),
        transient: true,
    }
}

#[test]
fn transient_errors_retry_after_the_delay() {
    let mut j = job_with_file();
    j.set_min_retry_delay_secs(60, 0).unwrap();
    running(&mut j, 1000);
    assert_eq!(j.fail(e503(), 1000).unwrap(), State::TransientError);
    assert_eq!(j.retry_at(), Some(1060));
    assert_eq!(j.last_error().unwrap().status, Some(503));
    assert_eq!(j.due_event(1059), None);
    assert_eq!(j.due_event(1060), Some(Verb::RetryDue));
    j.apply(Verb::RetryDue, 1060).unwrap();
    assert_eq!(j.state(), State::Queued);
    assert_eq!(j.retry_at(), None);
    assert_eq!(j.no_progress_since(), Some(1000), "no progress yet");
    j.apply(Verb::Start, 1061).unwrap();
    j.apply(Verb::Connected, 1061).unwrap();
    j.apply(Verb::Progress, 1062).unwrap();
    assert_eq!(j.no_progress_since(), None, "progress resets the timer");
}

#[test]
fn no_progress_timeout_makes_errors_final() {
    // Timeout 0: the first error is final.
    let mut j = job_with_file();
    j.set_no_progress_timeout_secs(0, 0).unwrap();
    running(&mut j, 10);
    assert_eq!(j.fail(e503(), 10).unwrap(), State::Error);
    assert_eq!(j.retry_at(), None);

    // A retry that would come after the deadline is final at once.
    let mut j = job_with_file();
    j.set_min_retry_delay_secs(600, 0).unwrap();
    j.set_no_progress_timeout_secs(1000, 0).unwrap();
    running(&mut j, 0);
    assert_eq!(j.fail(e503(), 0).unwrap(), State::TransientError);
    j.apply(Verb::RetryDue, 600).unwrap();
    j.apply(Verb::Start, 600).unwrap();
    assert_eq!(
        j.fail(e503(), 600).unwrap(),
        State::Error,
        "1200 > 0 + 1000"
    );

    // The deadline passing while waiting gives the timeout event.
    let mut j = job_with_file();
    j.set_min_retry_delay_secs(600, 0).unwrap();
    j.set_no_progress_timeout_secs(700, 0).unwrap();
    running(&mut j, 0);
    j.fail(e503(), 0).unwrap();
    assert_eq!(j.no_progress_deadline(), Some(700));
    assert_eq!(j.due_event(700), Some(Verb::NoProgressTimeout));
    assert_eq!(j.apply(Verb::NoProgressTimeout, 700).unwrap(), State::Error);

    // A final error is final whatever the timers say.
    let mut j = job_with_file();
    running(&mut j, 0);
    let e = JobError {
        status: Some(404),
        message: "Not Found".into(),
        transient: false,
    };
    assert_eq!(j.fail(e, 0).unwrap(), State::Error);
    assert_eq!(
        j.last_error().unwrap().to_string(),
        "final error: HTTP 404: Not Found"
    );

    // Resume re-arms an error job and clears it.
    assert_eq!(j.apply(Verb::Resume, 5).unwrap(), State::Queued);
    assert_eq!(j.last_error(), None);
    assert_eq!(j.no_progress_since(), None);
}

#[test]
fn failure_in_a_state_that_cannot_fail_is_refused() {
    let mut j = job_with_file();
    let e = j.fail(e503(), 0).unwrap_err();
    assert!(e.to_string().contains("SUSPENDED"), "{e}");
    assert_eq!(j.last_error(), None);
}

#[test]
fn network_loss_waits_for_the_engine() {
    let mut j = job_with_file();
    running(&mut j, 0);
    j.apply(Verb::TransientFailure, 5).unwrap();
    assert_eq!(j.retry_at(), None);
    assert_eq!(
        j.due_event(1_000_000),
        None,
        "requeued on reconnect, not by the timer"
    );
}

#[test]
fn notify_is_due_once_and_retried_after_failure() {
    let mut j = job_with_file();
    j.set_notify(
        Some(NotifyCommand::new("/usr/bin/true", vec![]).unwrap()),
        0,
    )
    .unwrap();
    j.set_min_retry_delay_secs(30, 0).unwrap();
    running(&mut j, 0);
    assert_eq!(j.notify_due(), None);
    j.apply(Verb::Progress, 1).unwrap();
    assert_eq!(j.notify_due(), None, "not on progress");
    j.apply(Verb::AllDone, 2).unwrap();
    assert_eq!(j.completed(), Some(2));
    assert_eq!(j.notify_due(), Some(2));
    j.notify_ran(false, 3);
    assert_eq!(j.notify_due(), Some(33));
    j.notify_ran(true, 33);
    assert_eq!(j.notify_due(), None);
    j.apply(Verb::Complete, 40).unwrap();
    j.notify_ran(false, 41);
    assert_eq!(j.notify_due(), None, "never after complete");
}

#[test]
fn early_complete_keeps_only_finished_files() {
    let mut j = job_with_file();
    j.add_file(
        FileSpec::new(url("https://example.test/b"), "/srv/b").unwrap(),
        1,
    )
    .unwrap();
    running(&mut j, 2);
    j.file_mut(0).unwrap().completed = true;
    assert_eq!(j.apply(Verb::Complete, 3).unwrap(), State::Acknowledged);
    let kept: Vec<usize> = j.kept_files().map(|(i, _)| i).collect();
    assert_eq!(kept, vec![0]);
    assert!(j.set_priority(Priority::High, 4).is_err());
}

#[test]
fn remote_name_changes_keep_progress() {
    let mut j = job_with_file();
    j.file_mut(0).unwrap().bytes_done = 500;
    j.file_mut(0).unwrap().validator = Some(Validator {
        etag: Some("\"v1\"".into()),
        last_modified: None,
        length: Some(1000),
    });
    running(&mut j, 1);
    let e = j
        .set_remote_name(0, url("https://mirror.test/a.iso"), 2)
        .unwrap_err();
    assert!(e.to_string().contains("TRANSFERRING"), "{e}");
    j.apply(Verb::Suspend, 3).unwrap();
    j.set_remote_name(0, url("https://mirror.test/a.iso"), 4)
        .unwrap();
    assert_eq!(j.files()[0].remote().as_str(), "https://mirror.test/a.iso");
    assert_eq!(j.files()[0].bytes_done, 500);
    assert!(j.set_remote_name(7, url("https://m.test/"), 5).is_err());
    assert!(j.set_remote_name(0, url("file:///etc/passwd"), 5).is_err());
    j.file_mut(0).unwrap().restart();
    assert_eq!(
        (j.files()[0].bytes_done, j.files()[0].validator.clone()),
        (0, None)
    );
}

#[test]
fn redirect_report_needs_allow_report() {
    let mut j = job_with_file();
    running(&mut j, 0);
    assert_eq!(
        j.report_redirect(0, url("https://cdn.test/a"), 1),
        Err(ValidationError::RedirectNotReported)
    );
    j.set_redirect_policy(RedirectPolicy::AllowReport, false, 1)
        .unwrap();
    j.report_redirect(0, url("https://cdn.test/a"), 2).unwrap();
    assert_eq!(j.files()[0].remote().host_str(), Some("cdn.test"));
}

#[test]
fn dynamic_content_excludes_ranges() {
    let mut j = Job::new(id(4), 1, "dyn", 0).unwrap();
    j.set_dynamic_content(true, 0).unwrap();
    let ranged =
        FileSpec::with_ranges(url("https://h.test/a"), "/a", vec![r(0, Some(10))]).unwrap();
    assert_eq!(
        j.add_file(ranged.clone(), 1),
        Err(ValidationError::RangesWithDynamicContent)
    );
    j.set_dynamic_content(false, 1).unwrap();
    j.add_file(ranged, 1).unwrap();
    assert_eq!(
        j.set_dynamic_content(true, 2),
        Err(ValidationError::RangesWithDynamicContent)
    );
}

#[test]
fn validators_compare_entities() {
    let v = |e: Option<&str>, lm: Option<&str>, len: Option<u64>| Validator {
        etag: e.map(str::to_owned),
        last_modified: lm.map(str::to_owned),
        length: len,
    };
    assert!(v(Some("\"a\""), None, Some(5)).same_entity(&v(Some("\"a\""), None, Some(5))));
    assert!(!v(Some("\"a\""), None, Some(5)).same_entity(&v(Some("\"b\""), None, Some(5))));
    assert!(!v(Some("W/\"a\""), None, None).same_entity(&v(Some("W/\"a\""), None, None)));
    let lm = Some("Tue, 01 Jul 2025 00:00:00 GMT");
    assert!(v(None, lm, Some(9)).same_entity(&v(None, lm, Some(9))));
    assert!(!v(None, lm, Some(9)).same_entity(&v(None, lm, Some(10))));
    assert!(
        !v(None, None, Some(9)).same_entity(&v(None, None, Some(9))),
        "length alone is not enough"
    );
}

#[test]
fn rate_limit_and_names() {
    let mut j = job_with_file();
    j.set_rate_limit(Some(0), 1).unwrap();
    assert_eq!(j.rate_limit(), None);
    j.set_rate_limit(Some(8192), 1).unwrap();
    assert_eq!(j.rate_limit(), Some(8192));
    j.set_display_name("renamed", 2).unwrap();
    assert_eq!(j.display_name(), "renamed");
    assert!(j.set_display_name("bad\rname", 3).is_err());
    let _: PathBuf = j.files()[0].local().to_owned();
}
