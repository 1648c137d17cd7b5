#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io::{self, Write},
    num::NonZeroUsize,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant, UNIX_EPOCH},
};

use http::{HeaderValue, Method, Version};

use super::{
    template::{self, Field, Headers, Piece},
    AccessLog, Formatter, LineCounts, LogFormat, Record, Writer, DEFAULTS,
};
use crate::config::AccessLogConfig;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("proxy-core-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` for up to 5 s.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// A request as both logs see it.
fn record() -> Record {
    let mut r = Record::new();
    r.start = UNIX_EPOCH + Duration::from_millis(1_717_171_717_123);
    r.duration = Duration::from_micros(1234);
    r.listener = Some("main".into());
    r.peer = Some("127.0.0.1:5000".parse().unwrap());
    r.method = Some(Method::GET);
    r.uri = Some("/a?b=1".parse().unwrap());
    r.version = Version::HTTP_11;
    r.status = 200;
    r.bytes_sent = 512;
    r.route = Some("api".into());
    r
}

fn line(format: &LogFormat, r: &Record) -> String {
    let mut out = String::new();
    Formatter::new(format, &DEFAULTS)
        .unwrap()
        .format(r, &mut out);
    out
}

#[test]
fn default_text_is_the_proxy_line() {
    assert_eq!(
        line(&LogFormat::text(), &record()),
        "1717171717.123 main 127.0.0.1:5000 \"GET /a?b=1 HTTP/1.1\" 200 512 1.234ms route=api error=-\n"
    );
}

#[test]
fn default_json_fields() {
    let l = line(&LogFormat::json(), &record());
    assert!(l.ends_with("}\n"), "{l}");
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["ts"].as_f64(), Some(1_717_171_717.123));
    assert_eq!(v["listener"], "main");
    assert_eq!(v["peer"], "127.0.0.1:5000");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["uri"], "/a?b=1");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_sent"], 512);
    assert_eq!(v["duration_ms"].as_f64(), Some(1.234));
    assert_eq!(v["route"], "api");
    assert!(v["proxy_error"].is_null(), "{v}");
}

/// What the connection loop logs of a request it answered itself.
#[test]
fn connection_loop_answers_have_no_method() {
    let mut r = Record::new();
    r.start = UNIX_EPOCH;
    r.listener = Some("main".into());
    r.status = 408;
    r.proxy_error = Some(HeaderValue::from_static("request_timeout"));
    assert_eq!(
        line(&LogFormat::text(), &r),
        "0.000 main - \"- - HTTP/1.1\" 408 0 0.000ms route=- error=request_timeout\n"
    );
    let v: serde_json::Value = serde_json::from_str(&line(&LogFormat::json(), &r)).unwrap();
    assert!(
        v["method"].is_null() && v["uri"].is_null() && v["peer"].is_null(),
        "{v}"
    );
    assert_eq!(v["status"], 408);
    assert_eq!(v["proxy_error"], "request_timeout");
}

#[test]
fn templates_with_headers_and_escaping() {
    let format = LogFormat::Json(BTreeMap::from([
        ("k\"ey".to_owned(), "say \"%REQ(x-a)%\"".to_owned()),
        ("ua".to_owned(), "%REQ(user-agent)%".to_owned()),
        ("up".to_owned(), "%RESP(x-up)%".to_owned()),
        ("at".to_owned(), "%START_TIME%".to_owned()),
    ]));
    let f = Formatter::new(&format, &DEFAULTS).unwrap();
    let req = http::Request::get("http://h.example/p")
        .header("x-a", "a\"b\\c")
        .body(())
        .unwrap();
    let resp = http::Response::builder()
        .header("x-up", "u1")
        .body(())
        .unwrap();
    let mut r = record();
    r.request(&req, &f);
    r.response(&resp, &f);
    let mut out = String::new();
    f.format(&r, &mut out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["k\"ey"], "say \"a\"b\\c\"", "{out}");
    assert!(v["ua"].is_null(), "{out}");
    assert_eq!(v["up"], "u1");
    assert_eq!(v["at"], "2024-05-31T16:08:37.123Z");

    let text = LogFormat::Text("%AUTHORITY% %PATH% %REQ(x-a)% %RESP(x-up)% 100%%".into());
    let f = Formatter::new(&text, &DEFAULTS).unwrap();
    let mut r = Record::new();
    r.request(&req, &f);
    r.response(&resp, &f);
    let mut out = String::new();
    f.format(&r, &mut out);
    assert_eq!(out, "h.example /p a\"b\\c u1 100%\n");
}

#[test]
fn bad_templates_name_the_field() {
    let err = |f: LogFormat| Formatter::new(&f, &DEFAULTS).unwrap_err().to_string();
    assert_eq!(
        err(LogFormat::Text("%NOPE%".into())),
        "format.text: unknown field %NOPE%"
    );
    assert!(err(LogFormat::Json(BTreeMap::from([(
        "a".to_owned(),
        "%REQ(bad name)%".to_owned()
    )])))
    .starts_with("format.json.a: "));
}

#[test]
fn formats_as_written_in_config() {
    let parse = |y: &str| crate::config::from_yaml::<LogFormat>(y);
    assert_eq!(parse("text").unwrap(), LogFormat::text());
    assert_eq!(parse("json").unwrap(), LogFormat::json());
    assert_eq!(parse("{json: {}}").unwrap(), LogFormat::json());
    assert_eq!(
        parse("{text: '%STATUS%'}").unwrap(),
        LogFormat::Text("%STATUS%".into())
    );
    assert_eq!(
        parse("{json: {s: '%STATUS%'}}").unwrap(),
        LogFormat::Json(BTreeMap::from([("s".into(), "%STATUS%".into())]))
    );
    for bad in ["xml", "{xml: x}", "{text: a, json: {}}", "{}"] {
        assert!(parse(bad).is_err(), "{bad} accepted");
    }
    for f in [
        LogFormat::text(),
        LogFormat::json(),
        LogFormat::Text("%PATH%".into()),
        LogFormat::Json(BTreeMap::from([("p".into(), "%PATH%".into())])),
    ] {
        let yaml = crate::config::to_yaml(&f).unwrap();
        assert_eq!(parse(&yaml).unwrap(), f, "{yaml}");
    }
    let cfg: AccessLogConfig = crate::config::from_yaml("{path: a.log}").unwrap();
    assert_eq!(cfg.format, LogFormat::json(), "json unless told");
}

/// Building a log opens nothing and starts no thread; the first line does both.
#[test]
fn building_starts_no_thread() {
    let dir = temp_dir("access-build");
    let path = dir.join("access.log");
    let cfg = AccessLogConfig {
        format: LogFormat::Text("%METHOD% %STATUS%".into()),
        path: Some(path.clone()),
    };
    let log = AccessLog::new(&cfg).unwrap();
    assert!(!log.writer().is_started(), "building started the writer");
    assert!(!path.exists(), "building opened the file");

    let mut r = record();
    r.status = 201;
    log.log(&r);
    assert!(log.writer().is_started());
    assert!(eventually(
        || std::fs::read_to_string(&path).is_ok_and(|t| t == "GET 201\n")
    ));
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_paths_are_refused_at_build() {
    let cfg = |p: &str| AccessLogConfig {
        path: Some(p.into()),
        ..Default::default()
    };
    let err = |p: &str| AccessLog::new(&cfg(p)).unwrap_err().to_string();
    assert_eq!(
        err("/nonexistent-dir/x/a.log"),
        "path: /nonexistent-dir/x/a.log: its directory does not exist"
    );
    assert!(err(std::env::temp_dir().to_str().unwrap()).ends_with("is a directory"));
}

/// An output whose writes wait for a gate to open, telling when one is waiting.
#[derive(Clone, Default)]
struct Gated {
    state: Arc<(Mutex<(bool, bool)>, Condvar)>, // (a write is waiting, open)
    out: Arc<Mutex<Vec<u8>>>,
}

impl Gated {
    fn wait_blocked(&self) {
        let (m, cv) = &*self.state;
        let g = m.lock().unwrap();
        let (g, t) = cv
            .wait_timeout_while(g, Duration::from_secs(5), |(waiting, _)| !*waiting)
            .unwrap();
        assert!(!t.timed_out() && g.0, "the writer never wrote");
    }

    fn open(&self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().1 = true;
        cv.notify_all();
    }
}

impl Write for Gated {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (m, cv) = &*self.state;
        let mut g = m.lock().unwrap();
        g.0 = true;
        cv.notify_all();
        let _g = cv.wait_while(g, |(_, open)| !*open).unwrap();
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that cannot keep up: its queue fills, further lines are dropped and
/// counted at once, and the worker never waits.
#[test]
fn full_queue_drops_and_counts_instead_of_blocking() {
    let gated = Gated::default();
    let output = gated.clone();
    let counts = Arc::new(LineCounts::default());
    let capacity = 4;
    let writer = Writer::with_open(
        None,
        NonZeroUsize::new(capacity).unwrap(),
        counts.clone(),
        Arc::new(move || Ok(Box::new(output.clone()) as Box<dyn Write + Send>)),
    );
    writer.write_with(|l| l.push_str("first\n"));
    // The thread took the first line and is stuck writing it.
    gated.wait_blocked();

    let extra = 100;
    let started = Instant::now();
    for i in 0..extra {
        writer.write_with(|l| {
            use std::fmt::Write as _;
            let _ = writeln!(l, "line {i}");
        });
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "queueing waited for the writer: {:?}",
        started.elapsed()
    );
    assert_eq!(counts.dropped(), (extra - capacity) as u64);

    assert!(!writer.is_idle(), "lines are waiting");
    gated.open();
    let want = 1 + capacity as u64;
    assert!(
        eventually(|| counts.written() == want),
        "{}",
        counts.written()
    );
    assert!(eventually(|| writer.is_idle()));
    let text = String::from_utf8(gated.out.lock().unwrap().clone()).unwrap();
    assert_eq!(text, "first\nline 0\nline 1\nline 2\nline 3\n");
    assert_eq!(counts.failed(), 0);
}

#[test]
fn rfc3339_dates() {
    let mut s = String::new();
    template::rfc3339(&mut s, UNIX_EPOCH + Duration::from_millis(951_782_400_123)).unwrap();
    assert_eq!(s, "2000-02-29T00:00:00.123Z");
    s.clear();
    template::rfc3339(&mut s, UNIX_EPOCH).unwrap();
    assert_eq!(s, "1970-01-01T00:00:00.000Z");
}

#[test]
fn template_pieces() {
    let mut h = Headers::default();
    let p = template::parse("%METHOD% 100%% %REQ(x-a)%", "f", &mut h).unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(h.request.len(), 1);
    assert!(template::parse("%REQ(bad name)%", "f", &mut h).is_err());
    let envoy = template::parse("%REQ(:METHOD)% %RESPONSE_CODE%", "f", &mut h).unwrap();
    assert_eq!(envoy[0], Piece::Field(Field::Method));
    assert_eq!(envoy[2], Piece::Field(Field::Status));
    let lone = template::parse("50% done", "f", &mut h).unwrap();
    assert_eq!(lone, vec![Piece::Lit("50% done".into())]);
}
