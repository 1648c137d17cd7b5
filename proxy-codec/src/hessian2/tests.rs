//! Reader tests: every type code, both dialects, hostile input.

use super::{HessianError, Reader, Writer};

#[test]
fn compact_ints() {
    for v in [
        -16,
        0,
        47,
        48,
        -17,
        -2048,
        2047,
        2048,
        -262_144,
        262_143,
        262_144,
        i32::MIN,
        i32::MAX,
    ] {
        let mut w = Writer::new();
        w.int(v);
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        assert_eq!(r.read_int().unwrap(), v, "{v}");
        assert!(r.is_empty());
        let mut r = Reader::new(&b);
        r.skip_value().unwrap();
        assert!(r.is_empty());
    }
}

#[test]
fn strings_of_every_length_and_plane() {
    for s in [
        String::new(),
        "a".repeat(31),
        "b".repeat(32),
        "c".repeat(1023),
        "d".repeat(1024),
        "é".repeat(70_000),
        "😀x".repeat(20_000),
    ] {
        let mut w = Writer::new();
        w.string(&s);
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        assert_eq!(r.read_string().unwrap().as_deref(), Some(&*s));
        assert!(r.is_empty());
        let mut r = Reader::new(&b);
        r.skip_value().unwrap();
        assert!(r.is_empty());
    }
}

#[test]
fn java_style_four_byte_utf8_is_accepted() {
    // 0x02 code units, one 4-byte UTF-8 sequence (as hessian.js writes it).
    let b = [0x02, 0xf0, 0x9f, 0x98, 0x80];
    assert_eq!(
        Reader::new(&b).read_string().unwrap().as_deref(),
        Some("😀")
    );
}

#[test]
fn skips_every_compound_type() {
    let mut w = Writer::new();
    w.class_def("com.example.Point", &["x", "y", "label"]);
    w.object(0);
    w.int(1);
    w.long(1 << 40);
    w.string("p");
    w.raw(&[b'O', 0x90, 0x91, 0x92, b'N']); // 'O' with an int class ref
    w.raw(&[b'Q', 0x90]); // ref
    w.raw(&[b'M', 0x03, b'm', b'a', b'p', 0x90, 0x91, b'Z']); // typed map
    w.raw(&[b'U', 0x01, b't', 0x91, b'Z']); // variable typed list
    w.raw(&[b'V', 0x01, b't', 0x92, 0x91, 0x92]); // fixed typed list
    w.raw(&[b'X', 0x91, b'T']); // fixed untyped list
    w.raw(&[0x72, 0x90, b'F', b'T']); // compact typed list (type ref 0)
    w.raw(&[0x79, 0x5b]); // compact untyped list
    w.raw(&[b'A', 0x00, 0x01, 0xff, 0x21, 0x00]); // chunked binary
    w.raw(&[b'R', 0x00, 0x01, b'a', 0x01, b'b']); // chunked string
    w.raw(&[
        b'D', 0, 0, 0, 0, 0, 0, 0, 0, 0x5d, 1, 0x5e, 1, 2, 0x5f, 0, 0, 0, 1,
    ]);
    w.raw(&[
        b'J', 0, 0, 0, 0, 0, 0, 0, 0, b'K', 0, 0, 0, 0, b'Y', 0, 0, 0, 1,
    ]);
    w.raw(&[0x38, 0, 0, 0xf0, 0, 0xe0, 0xd0, 0, 0, 0xc0, 0]);
    w.map_begin();
    w.string("k");
    w.list_begin();
    w.null();
    w.list_end();
    w.map_end();
    w.binary(&[7; 5000]);
    let b = w.into_bytes();
    let mut r = Reader::new(&b);
    let mut n = 0;
    while !r.is_empty() {
        r.skip_value().unwrap();
        n += 1;
    }
    assert_eq!(n, 25);
}

#[test]
fn depth_is_limited() {
    let b = vec![b'W'; 10_000];
    assert_eq!(Reader::new(&b).skip_value(), Err(HessianError::TooDeep));
}

#[test]
fn truncated_and_reserved() {
    assert_eq!(Reader::new(&[b'I', 0]).skip_value(), Err(HessianError::Eof));
    assert_eq!(
        Reader::new(&[0x40]).skip_value(),
        Err(HessianError::BadCode(0x40))
    );
    assert_eq!(
        Reader::new(&[b'O', 0x90]).skip_value(),
        Err(HessianError::NoClassDef(0))
    );
    assert_eq!(
        Reader::new(&[b'X', 0xc7, 0]).skip_value(),
        Err(HessianError::BadLength)
    );
}

#[test]
fn string_maps_keep_string_pairs() {
    let mut w = Writer::new();
    w.map_begin();
    w.string("path");
    w.string("com.example.Hello");
    w.string("timeout");
    w.int(3000);
    w.string("empty");
    w.null();
    w.map_end();
    let b = w.into_bytes();
    let mut got = Vec::new();
    Reader::new(&b)
        .read_string_map(&mut |k, v| got.push((k, v)))
        .unwrap();
    assert_eq!(
        got,
        vec![
            ("path".to_owned(), Some("com.example.Hello".to_owned())),
            ("empty".to_owned(), None)
        ]
    );
}

#[test]
fn objects_by_field_name() {
    let mut w = Writer::new();
    w.class_def("Req", &["a", "method", "b"]);
    w.object(0);
    w.list_begin();
    w.int(1);
    w.list_end();
    w.string("hello");
    w.int(2);
    w.string("next");
    let b = w.into_bytes();
    let mut r = Reader::new(&b);
    let mut method = None;
    r.read_object(&mut |name, r| {
        if name == "method" {
            method = r.read_string()?;
            return Ok(true);
        }
        Ok(false)
    })
    .unwrap();
    assert_eq!(method.as_deref(), Some("hello"));
    assert_eq!(r.read_string().unwrap().as_deref(), Some("next"));
}

#[test]
fn draft_dialect_as_hessian_js_1_writes_it() {
    // A SofaRequest as sofa-bolt-node encodes it, then two arguments.
    let mut b = vec![b'O', 0x90 + 3];
    b.extend_from_slice(b"Req");
    b.push(0x93);
    for f in ["methodName", "sigs", "props"] {
        b.push(f.len() as u8);
        b.extend_from_slice(f.as_bytes());
    }
    b.extend_from_slice(&[b'o', 0x90, 0x02, b'h', b'i']);
    b.extend_from_slice(&[
        b'V', b't', 0, 2, b'[', b's', b'n', 2, 0x01, b'a', b's', 0, 1, b'b', 0x01, b'c', b'z',
    ]);
    b.extend_from_slice(&[
        b'M', 0x01, b'k', b'L', 0, 0, 0, 0, 0, 0, 0, 9, 0x67, 0x68, 0x69, 1, 0x6a, 1, 2, 0x6b, 0,
        0, 0, 0, b'N', b'z',
    ]);
    b.extend_from_slice(&[b'H', 0x77, 0, 0, 0, 1, b'd', 0, 0, 0, 0, 0, 0, 0, 0, b'z']);
    b.extend_from_slice(&[
        b'b', 0, 1, 9, b'B', 0, 1, 9, 0x4a, 1, b'v', 0x90, 0x91, 0x90,
    ]);
    let mut r = Reader::draft(&b);
    let mut method = None;
    r.read_object(&mut |name, r| {
        if name == "methodName" {
            method = r.read_string()?;
            return Ok(true);
        }
        Ok(false)
    })
    .unwrap();
    assert_eq!(method.as_deref(), Some("hi"));
    for _ in 0..4 {
        r.skip_value().unwrap();
    }
    assert!(r.is_empty(), "left {:?}", r.rest());
}
