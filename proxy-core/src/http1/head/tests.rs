use super::*;

fn req(s: &str) -> Result<Option<RequestHead>, HeadError> {
    parse_request(&mut BytesMut::from(s), 100, 65536)
}

#[test]
fn parses_simple_get() {
    let mut buf = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nrest");
    let h = parse_request(&mut buf, 100, 65536).unwrap().unwrap();
    assert_eq!(h.parts.method, Method::GET);
    assert_eq!(h.parts.uri, "/a?b=1");
    assert_eq!(h.parts.headers["x-a"], "1");
    assert_eq!(h.framing, Framing::Empty);
    assert!(h.keep_alive);
    assert_eq!(&buf[..], b"rest");
}

#[test]
fn partial_and_limits() {
    assert!(req("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(70000)
    );
    assert_eq!(req(&big).unwrap_err(), HeadError::TooLarge);
    let many: String = (0..101).map(|i| format!("X{i}: 1\r\n")).collect();
    assert_eq!(
        req(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")).unwrap_err(),
        HeadError::TooManyHeaders
    );
}

#[test]
fn smuggling_defences() {
    assert_eq!(
        req(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap_err(),
        HeadError::BadTransferEncoding
    );
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
            .unwrap_err(),
        HeadError::BadContentLength
    );
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n").unwrap_err(),
        HeadError::BadContentLength
    );
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").unwrap_err(),
        HeadError::BadTransferEncoding
    );
    assert_eq!(
        req("GET / HTTP/1.1\r\n\r\n").unwrap_err(),
        HeadError::BadHost
    );
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err(),
        HeadError::BadHost
    );
    for host in ["a b", "user@a", "a/b", "a:8o"] {
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).unwrap_err(),
            HeadError::BadHost,
            "{host:?}"
        );
    }
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")
            .unwrap()
            .unwrap()
            .framing,
        Framing::Length(5)
    );
}

#[test]
fn content_lengths_may_have_leading_zeros_but_not_overflow() {
    let framing = |cl: &str| {
        req(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n"
        ))
        .map(|h| h.unwrap().framing)
    };
    assert_eq!(framing("0005"), Ok(Framing::Length(5)));
    assert_eq!(framing("0000000000000000000000005"), Ok(Framing::Length(5)));
    assert_eq!(
        framing("18446744073709551615"),
        Err(HeadError::BadContentLength)
    );
    assert_eq!(
        framing("0099999999999999999999"),
        Err(HeadError::BadContentLength)
    );
}

#[test]
fn bad_request_lines_are_malformed_not_version_errors() {
    let bad = |s: &str| req(s).unwrap_err();
    assert_eq!(
        bad("GET /has space HTTP/1.1\r\nHost: x\r\n\r\n"),
        HeadError::Malformed
    );
    assert_eq!(
        bad("THIS IS NOT HTTP\r\nHost: x\r\n\r\n"),
        HeadError::Malformed
    );
    assert_eq!(
        bad("GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
        HeadError::BadVersion
    );
    assert_eq!(
        bad("GET / HTTP/3.0\r\nHost: x\r\n\r\n"),
        HeadError::BadVersion
    );
}

#[test]
fn a_later_minor_version_of_1_is_read_as_1_1() {
    // RFC 9110 section 2.5: processed as the highest minor version implemented.
    let h = req("GET / HTTP/1.2\r\nHost: x\r\n\r\n").unwrap().unwrap();
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert!(h.keep_alive);
    // Bytes arriving one by one reach the same result.
    let mut buf = BytesMut::new();
    let whole = b"POST /p HTTP/1.7\r\nHost: x\r\nContent-Length: 2\r\n\r\nok";
    let mut parsed = None;
    for &b in whole {
        buf.put_u8(b);
        if let Some(h) = parse_request(&mut buf, 100, 65536).unwrap() {
            parsed = Some(h);
        }
    }
    let h = parsed.unwrap();
    assert_eq!(
        (h.parts.version, h.framing),
        (Version::HTTP_11, Framing::Length(2))
    );
    assert_eq!(&buf[..], b"ok");
    let h = parse_response(
        &mut BytesMut::from("HTTP/1.4 204 No Content\r\n\r\n"),
        &Method::GET,
        65536,
        crate::bufs::Slab::Responses,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.parts.status, StatusCode::NO_CONTENT);
    assert_eq!(h.parts.version, Version::HTTP_11);
}

#[test]
fn connect_is_not_implemented() {
    let err = req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").unwrap_err();
    assert_eq!(err, HeadError::Unsupported);
}

#[test]
fn keep_alive_rules() {
    assert!(!req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
    assert!(
        req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap()
            .keep_alive
    );
    assert!(
        !req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap()
            .keep_alive
    );
    let up = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(up.upgrade);
}

#[test]
fn response_framing() {
    let parse = |s: &str, m: Method| {
        parse_response(
            &mut BytesMut::from(s),
            &m,
            65536,
            crate::bufs::Slab::Responses,
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::GET).framing,
        Framing::Length(5)
    );
    assert_eq!(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD).framing,
        Framing::Empty
    );
    assert_eq!(
        parse("HTTP/1.1 204 No Content\r\n\r\n", Method::GET).framing,
        Framing::Empty
    );
    let close = parse("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
    assert_eq!(close.framing, Framing::Close);
    assert!(!close.keep_alive);
    assert_eq!(
        parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET
        )
        .framing,
        Framing::Chunked
    );
}

#[test]
fn transfer_codings_other_than_chunked_are_not_forwarded_without_their_meaning() {
    // A request: other codings before `chunked` are not implemented (501); `chunked`
    // not last, or twice, leaves the length unknown (400); `chunked` alone frames it.
    let unknown = Err(HeadError::UnknownTransferCoding);
    let bad = Err(HeadError::BadTransferEncoding);
    let chunked = Ok(Framing::Chunked);
    for (te, expected) in [
        ("gzip, chunked", unknown),
        ("identity, chunked", unknown),
        ("gzip\r\nTransfer-Encoding: chunked", unknown),
        (" GZIP ,chunked", unknown),
        ("gzip", bad),
        ("chunked, gzip", bad),
        ("chunked, chunked", bad),
        ("chunked\r\nTransfer-Encoding: chunked", bad),
        (",", bad),
        ("chunked", chunked),
        ("Chunked", chunked),
        (" chunked ", chunked),
        ("chunked,", chunked),
    ] {
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
        let framing = req(&head).map(|h| h.expect("a whole head").framing);
        assert_eq!(framing, expected, "{te}");
    }
    // An answer: only `chunked` alone is forwarded; anything else is refused rather
    // than passed on as content without its coding.
    for te in ["gzip, chunked", "gzip", "chunked, gzip", "chunked, chunked"] {
        let head = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
        let err = parse_response(
            &mut BytesMut::from(head.as_str()),
            &Method::GET,
            65536,
            crate::bufs::Slab::Responses,
        )
        .unwrap_err();
        assert_eq!(err, HeadError::UnknownTransferCoding, "{te}");
    }
}

#[test]
fn encodes_heads() {
    let mut buf = BytesMut::new();
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    encode_response(&mut buf, StatusCode::OK, &h, Framing::Length(12), false);
    assert_eq!(
        &buf[..],
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 12\r\n\r\n"
    );
    buf.clear();
    encode_request(&mut buf, &Method::GET, "/p", &h, Framing::Empty);
    assert_eq!(&buf[..], b"GET /p HTTP/1.1\r\nx-a: 1\r\n\r\n");
}

#[test]
fn a_request_sends_its_cookies_on_one_line() {
    let mut h = HeaderMap::new();
    h.append("cookie", HeaderValue::from_static("a=1"));
    h.append("x-a", HeaderValue::from_static("1"));
    h.append("cookie", HeaderValue::from_static(""));
    h.append("cookie", HeaderValue::from_static("b=2; c=3"));
    h.append("cookie", HeaderValue::from_static("d=4"));
    h.append("x-b", HeaderValue::from_static("2"));
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &Method::GET, "/p", &h, Framing::Empty);
    assert_eq!(
        &buf[..],
        &b"GET /p HTTP/1.1\r\ncookie: a=1; b=2; c=3; d=4\r\nx-a: 1\r\nx-b: 2\r\n\r\n"[..]
    );
    // One cookie, or only empty ones, as they were less the empty field.
    let mut one = HeaderMap::new();
    one.append("cookie", HeaderValue::from_static(""));
    one.append("cookie", HeaderValue::from_static("a=1"));
    buf.clear();
    encode_request(&mut buf, &Method::GET, "/", &one, Framing::Empty);
    assert_eq!(&buf[..], b"GET / HTTP/1.1\r\ncookie: a=1\r\n\r\n");
    // An answer's `Set-Cookie` fields are never joined.
    let mut answer = HeaderMap::new();
    answer.append("set-cookie", HeaderValue::from_static("a=1"));
    answer.append("set-cookie", HeaderValue::from_static("b=2"));
    buf.clear();
    encode_response(&mut buf, StatusCode::OK, &answer, Framing::Empty, false);
    assert_eq!(
        &buf[..],
        &b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 0\r\n\r\n"[..]
    );
}

#[test]
fn a_response_connection_field_naming_only_close_or_keep_alive_is_not_kept() {
    let parse = |s: &str| {
        parse_response(
            &mut BytesMut::from(s),
            &Method::GET,
            65536,
            crate::bufs::Slab::Responses,
        )
        .unwrap()
        .unwrap()
    };
    let plain = parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
    assert!(plain.keep_alive);
    assert!(!plain.parts.headers.contains_key("connection"));
    let close = parse("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n");
    assert!(!close.keep_alive);
    assert!(!close.parts.headers.contains_key("connection"));
    // A field that names another one stays, so that the named one is removed too.
    let named = parse("HTTP/1.1 200 OK\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n");
    assert!(!named.keep_alive);
    assert_eq!(named.parts.headers["connection"], "close, x-a");
    let upgrade =
        parse("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n");
    assert_eq!(upgrade.parts.headers["connection"], "upgrade");
}

#[test]
fn framing_fields_in_the_map_are_not_written() {
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    h.insert("content-length", HeaderValue::from_static("99"));
    h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    h.insert("expect", HeaderValue::from_static("100-continue"));
    let mut buf = BytesMut::new();
    encode_response_reframed(
        &mut buf,
        StatusCode::OK,
        &h,
        Framing::Length(2),
        false,
        false,
    );
    assert_eq!(
        &buf[..],
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    );
    // The answer to HEAD keeps the upstream's length.
    buf.clear();
    encode_response_reframed(&mut buf, StatusCode::OK, &h, Framing::Close, false, true);
    assert_eq!(
        &buf[..],
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 99\r\nexpect: 100-continue\r\n\r\n"
    );
    buf.clear();
    encode_request(&mut buf, &Method::POST, "/p", &h, Framing::Chunked);
    assert_eq!(
        &buf[..],
        b"POST /p HTTP/1.1\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn common_names_are_the_names_the_table_gives() {
    for raw in [
        "Host",
        "Date",
        "ETag",
        "Vary",
        "Accept",
        "Server",
        "Cookie",
        "Expect",
        "Upgrade",
        "Location",
        "Connection",
        "User-Agent",
        "Keep-Alive",
        "Content-Type",
        "Cache-Control",
        "Accept-Ranges",
        "Last-Modified",
        "Authorization",
        "Content-Length",
        "Accept-Encoding",
        "Accept-Language",
        "X-Forwarded-For",
        "Transfer-Encoding",
    ] {
        for spelling in [raw.to_owned(), raw.to_ascii_lowercase()] {
            let (fast, role) = common_name(spelling.as_bytes()).expect(&spelling);
            let table = HeaderName::from_bytes(spelling.as_bytes()).unwrap();
            assert_eq!(fast, table, "{spelling}");
            assert_eq!(fast.as_str(), table.as_str());
            assert_eq!(role, facts::Role::of(&table), "{spelling}");
        }
    }
    assert!(common_name(b"HOST").is_none());
    assert!(common_name(b"x-other").is_none());
}

#[test]
fn an_answer_field_named_like_a_framing_field_with_an_underscore_is_dropped() {
    let r = parse_response(
        &mut BytesMut::from(
            "HTTP/1.1 200 OK\r\nContent_Length: 9\r\nTransfer_Encoding: chunked\r\n\
             X_Custom: kept\r\nContent-Length: 2\r\n\r\nok",
        ),
        &Method::GET,
        65536,
        crate::bufs::Slab::Responses,
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.framing, Framing::Length(2));
    assert!(!r.parts.headers.contains_key("content_length"));
    assert!(!r.parts.headers.contains_key("transfer_encoding"));
    assert_eq!(r.parts.headers["x_custom"], "kept");
}

#[test]
fn framing_names_in_any_case_are_read_as_framing_names() {
    // Spelled neither capitalised nor lowercase, so not matched by spelling: their
    // roles come from the parsed name, and every framing rule still holds.
    let h = req("POST / HTTP/1.1\r\nHOST: x\r\nCONTENT-LENGTH: 5\r\nCONNECTION: close\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Length(5));
    assert!(!h.keep_alive);
    assert_eq!(
        req(
            "POST / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\nTRANSFER-encoding: chunked\r\n\r\n"
        )
        .unwrap_err(),
        HeadError::BadTransferEncoding
    );
    assert_eq!(
        req("GET / HTTP/1.1\r\nhOsT: x\r\nHOST: y\r\n\r\n").unwrap_err(),
        HeadError::BadHost
    );
    let h = req("POST / HTTP/1.1\r\nHost: x\r\nEXPECT: 100-continue\r\nContent-Length: 1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.expect_continue);
    let h = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: UPGRADE\r\nUPGRADE: websocket\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.upgrade);
    let r = parse_response(
        &mut BytesMut::from("HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 3\r\nCONNECTION: close\r\n\r\n"),
        &Method::GET,
        65536,
        crate::bufs::Slab::Responses,
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.framing, Framing::Length(3));
    assert!(!r.keep_alive);
    assert!(r.parts.headers.get(http::header::CONNECTION).is_none());
}
