//! Encode and decode of each type in both dialects, answers as real peers write
//! them, and properties: no panic on any bytes or any JSON.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{
    answer::{self, Answer},
    config::{ArgumentConfig, Dialect, JsonToRpcConfig, Signature, TargetProtocol},
    decode::Decoder,
    encode::{self, ArgumentError, ArgumentRef},
};
use crate::hessian2::{Reader, Writer};

fn sig(protocol: TargetProtocol, dialect: Dialect, args: Vec<ArgumentConfig>) -> Signature {
    Signature::from_config(&JsonToRpcConfig {
        protocol,
        service: "com.example.EchoService".into(),
        version: Some("1.0".into()),
        group: Some("g1".into()),
        method: "echo".into(),
        arguments: args,
        dialect,
        max_body_bytes: None,
    })
    .unwrap()
}

fn user() -> ArgumentConfig {
    let mut u = ArgumentConfig::new("com.example.User");
    u.fields = vec![
        ArgumentConfig::new("java.lang.String").named("name"),
        ArgumentConfig::new("java.lang.Integer").named("age"),
    ];
    u
}

/// Every type with a value, encoded as Dubbo arguments, decoded back.
#[test]
fn each_type_round_trips_in_both_dialects() {
    let cases: Vec<(ArgumentConfig, Value, Value)> = vec![
        (
            ArgumentConfig::new("java.lang.String"),
            json!("héllo 😀"),
            json!("héllo 😀"),
        ),
        (ArgumentConfig::new("int"), json!(-70000), json!(-70000)),
        (
            ArgumentConfig::new("java.lang.Integer"),
            json!(null),
            json!(null),
        ),
        (
            ArgumentConfig::new("long"),
            json!(12_345_678_901i64),
            json!(12_345_678_901i64),
        ),
        (
            ArgumentConfig::new("long"),
            json!(-300_000),
            json!(-300_000),
        ),
        (ArgumentConfig::new("double"), json!(2.5), json!(2.5)),
        (ArgumentConfig::new("double"), json!(3), json!(3.0)),
        (ArgumentConfig::new("boolean"), json!(true), json!(true)),
        (
            ArgumentConfig::new("java.util.List"),
            json!([1, "a", [null]]),
            json!([1, "a", [null]]),
        ),
        (
            ArgumentConfig::new("java.util.Map"),
            json!({"k": {"n": 1.5}}),
            json!({"k": {"n": 1.5}}),
        ),
        (
            ArgumentConfig::new("java.lang.Object"),
            json!(false),
            json!(false),
        ),
        (
            user(),
            json!({"name": "ann"}),
            json!({"name": "ann", "age": null}),
        ),
    ];
    for dialect in [Dialect::Final, Dialect::Draft] {
        for (arg, input, expected) in &cases {
            let s = sig(TargetProtocol::Dubbo, dialect, vec![arg.clone()]);
            let body = encode::encode_call(&s, std::slice::from_ref(input)).unwrap();
            let mut d = Decoder::new(&body, dialect == Dialect::Draft);
            let head: Vec<Value> = (0..5).map(|_| d.read().unwrap().value).collect();
            assert_eq!(head[1], "com.example.EchoService");
            assert_eq!(head[4], json!(s.arguments[0].1.descriptor()));
            let got = d.read().unwrap();
            assert_eq!(&got.value, expected, "{dialect:?} {}", arg.java_type);
            if arg.java_type == "com.example.User" {
                assert_eq!(got.class.as_deref(), Some("com.example.User"));
            }
            let attachments = d.read().unwrap().value;
            assert_eq!(attachments["group"], "g1");
            assert!(d.is_empty());
        }
    }
}

/// A Bolt call is a `SofaRequest` the codec's own reader routes by, then the args.
#[test]
fn bolt_content_is_a_sofa_request() {
    for dialect in [Dialect::Final, Dialect::Draft] {
        let s = sig(
            TargetProtocol::Bolt,
            dialect,
            vec![
                ArgumentConfig::new("java.lang.String"),
                ArgumentConfig::new("int"),
            ],
        );
        let body = encode::encode_call(&s, &[json!("x"), json!(7)]).unwrap();
        // The codec routes a Bolt call without header map by these fields.
        let mut r = if dialect == Dialect::Draft {
            Reader::draft(&body)
        } else {
            Reader::new(&body)
        };
        let mut seen = Vec::new();
        r.read_object(&mut |name, r| {
            if name == "targetServiceUniqueName" || name == "methodName" {
                seen.push(r.string_or_skip()?.unwrap_or_default());
                return Ok(true);
            }
            Ok(false)
        })
        .unwrap();
        assert_eq!(seen, ["echo", "com.example.EchoService:1.0:g1"]);
        let mut d = Decoder::new(&body, dialect == Dialect::Draft);
        let (class, fields) = d.read_object().unwrap();
        assert_eq!(class, crate::bolt::SOFA_REQUEST);
        let sigs = &fields
            .iter()
            .find(|(n, _)| n == "methodArgSigs")
            .unwrap()
            .1
            .value;
        assert_eq!(sigs, &json!(["java.lang.String", "int"]));
        assert_eq!(d.read().unwrap().value, "x");
        assert_eq!(d.read().unwrap().value, 7);
        assert!(d.is_empty());
        // The codec's skipping reader agrees on where the values end.
        let mut r = if dialect == Dialect::Draft {
            Reader::draft(&body)
        } else {
            Reader::new(&body)
        };
        for _ in 0..3 {
            r.skip_value().unwrap();
        }
        assert!(r.is_empty());
    }
}

#[test]
fn mismatches_name_the_argument_and_type() {
    let s = sig(
        TargetProtocol::Dubbo,
        Dialect::Final,
        vec![ArgumentConfig::new("int").named("n"), user().named("u")],
    );
    let err = |body: &str| {
        let values = encode::arguments(&s, body.as_bytes())?;
        encode::encode_call(&s, &values)
    };
    let e = err(r#"{"n": 2147483648, "u": null}"#).unwrap_err();
    assert_eq!(e.argument(), Some(&ArgumentRef::Name("n".into())));
    assert_eq!(e.expected(), Some("int"));
    let e = err(r#"{"n": 1, "u": {"age": "x"}}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "argument u.age: expected java.lang.Integer, got string"
    );
    let e = err(r#"{"n": 1, "u": {"nick": "x"}}"#).unwrap_err();
    assert!(e.to_string().contains("u.nick"), "{e}");
    let e = err(r#"{"n": 1}"#).unwrap_err();
    assert_eq!(e.to_string(), "missing argument u");
    let e = err(r#"{"n": 1, "u": null, "x": 2}"#).unwrap_err();
    assert_eq!(e.to_string(), "unknown argument x");
    assert!(matches!(
        err("[1]"),
        Err(ArgumentError::Arity {
            expected: 2,
            got: 1
        })
    ));
    assert!(matches!(
        err("1"),
        Err(ArgumentError::NotArguments { named: true })
    ));
    assert!(matches!(err("{"), Err(ArgumentError::NotJson(_))));
    let e = err(r#"[null, null]"#).unwrap_err();
    assert_eq!(e.argument(), Some(&ArgumentRef::Name("n".into())));
    let deep = format!("[1, {{\"name\": {}1{}}}]", "[".repeat(100), "]".repeat(100));
    assert!(err(&deep).is_err());
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// SofaResponses as sofa-bolt-node (hessian.js 1.x) writes them.
#[test]
fn reads_sofa_responses_of_sofa_rpc_node() {
    let head = "4fbe636f6d2e616c697061792e736f66612e7270632e636f72652e726573706f6e73652e536f6661526573706f6e7365940769734572726f72086572726f724d73670b617070526573706f6e73650d726573706f6e736550726f70736f90";
    let cases = [
        ("464e0268694e", Answer::Value(json!("hi"))),
        (
            "464e4d0161910162566e039144400400000000000001787a01634f97636f6d2e782e5091016e6f9101717a4e",
            Answer::Value(json!({"a": 1, "b": [1, 2.5, "x"], "c": {"n": "q"}})),
        ),
        (
            "5404626f6f6d4e4e",
            Answer::Exception { message: "boom".into(), class: None },
        ),
        ("464e4c00000002dfdc1c354e", Answer::Value(json!(12_345_678_901i64))),
    ];
    for (tail, expected) in cases {
        let content = hex(&format!("{head}{tail}"));
        assert_eq!(answer::bolt(0, &content).unwrap(), expected, "{tail}");
    }
}

/// A Java SOFARPC answer (final dialect): a thrown exception as `appResponse` (its
/// `cause` a reference to itself, as Java writes it), and a value object whose
/// class merely ends in `Error`.
#[test]
fn reads_java_sofa_responses() {
    let sofa = |app: &dyn Fn(&mut Writer)| {
        let mut w = Writer::new();
        w.class_def(
            crate::bolt::SOFA_RESPONSE,
            &["isError", "errorMsg", "appResponse", "responseProps"],
        );
        w.object(0).bool(false).null();
        app(&mut w);
        w.null();
        w.into_bytes()
    };
    let thrown = sofa(&|w| {
        w.class_def(
            "com.example.NoStockException",
            &["detailMessage", "cause", "stackTrace"],
        );
        w.object(1).string("sold out").raw(b"Q").int(1).raw(&[0x78]);
    });
    assert_eq!(
        answer::bolt(0, &thrown).unwrap(),
        Answer::Exception {
            message: "sold out".into(),
            class: Some("com.example.NoStockException".into())
        }
    );
    let value = sofa(&|w| {
        w.class_def("com.example.FieldError", &["field", "code"]);
        w.object(1).string("age").int(3);
    });
    assert_eq!(
        answer::bolt(0, &value).unwrap(),
        Answer::Value(json!({"field": "age", "code": 3}))
    );
    let mut w = Writer::new();
    w.string("no processor");
    assert_eq!(
        answer::bolt(6, w.as_bytes()).unwrap(),
        Answer::Status {
            status: 6,
            message: "no processor".into()
        }
    );
}

#[test]
fn reads_dubbo_responses_and_java_exceptions() {
    let mut w = Writer::new();
    w.int(crate::dubbo::RESPONSE_VALUE_WITH_ATTACHMENTS);
    w.list_begin().int(1).long(2).list_end();
    w.string_map([("k", "v")]);
    assert_eq!(
        answer::dubbo(20, w.as_bytes()).unwrap(),
        Answer::Value(json!([1, 2]))
    );

    let mut w = Writer::new();
    w.int(crate::dubbo::RESPONSE_WITH_EXCEPTION);
    w.class_def(
        "java.lang.IllegalStateException",
        &["detailMessage", "cause", "stackTrace"],
    );
    w.object(0).string("no stock").null();
    w.raw(&[0x78]);
    assert_eq!(
        answer::dubbo(20, w.as_bytes()).unwrap(),
        Answer::Exception {
            message: "no stock".into(),
            class: Some("java.lang.IllegalStateException".into())
        }
    );

    let mut w = Writer::new();
    w.int(crate::dubbo::RESPONSE_NULL_VALUE);
    assert_eq!(
        answer::dubbo(20, w.as_bytes()).unwrap(),
        Answer::Value(Value::Null)
    );

    let mut w = Writer::new();
    w.string("service not found");
    assert_eq!(
        answer::dubbo(60, w.as_bytes()).unwrap(),
        Answer::Status {
            status: 60,
            message: "service not found".into()
        }
    );
    assert!(answer::dubbo(20, &[0x91, b'Q']).is_err());
}

#[test]
fn decodes_final_spec_codes() {
    let mut w = Writer::new();
    w.binary(b"fo").long(-8).long(1 << 40);
    w.raw(&[0x5b, 0x5c, 0x5d, 0xfe, 0x5f, 0, 0, 0x04, 0xb0]); // 0.0 1.0 -2.0 1.2
    w.raw(&[b'W', 0x91, b'Z', b'Q', 0x90]); // a list, then a reference to it
    let mut d = Decoder::new(w.as_bytes(), false);
    let got: Vec<Value> = (0..9).map(|_| d.read().unwrap().value).collect();
    assert_eq!(
        got,
        vec![
            json!("Zm8="),
            json!(-8),
            json!(1u64 << 40),
            json!(0.0),
            json!(1.0),
            json!(-2.0),
            json!(1.2),
            json!([1]),
            json!([1])
        ]
    );
}

/// References may repeat a value, but not without bound: a list of refs to a list
/// of refs to ... is refused, not expanded.
#[test]
fn reference_bombs_are_refused() {
    let mut w = Writer::new();
    for level in 0..4 {
        w.raw(b"X").int(200);
        for _ in 0..200 {
            if level == 0 {
                w.int(1);
            } else {
                w.raw(b"Q").int(level - 1);
            }
        }
    }
    let bytes = w.into_bytes();
    let mut d = Decoder::new(&bytes, false);
    let mut results = Vec::new();
    while !d.is_empty() {
        match d.read() {
            Ok(v) => results.push(v),
            Err(e) => {
                assert_eq!(e, crate::hessian2::HessianError::TooDeep);
                return;
            }
        }
    }
    panic!("200^4 values were expanded");
}

/// A reference to a value being read (a cycle) is null.
#[test]
fn cyclic_reference_is_null() {
    let bytes = [b'X', 0x92, 0x91, b'Q', 0x90];
    let got = Decoder::new(&bytes, false).read().unwrap().value;
    assert_eq!(got, json!([1, null]));
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), draft: bool) {
        let mut d = Decoder::new(&bytes, draft);
        while d.read().is_ok() && !d.is_empty() {}
        let _ = answer::bolt(0, &bytes);
        let _ = answer::dubbo(20, &bytes);
        let _ = answer::bolt(2, &bytes);
    }

    #[test]
    fn encoder_takes_any_json(v in any_json(), draft: bool) {
        let dialect = if draft { Dialect::Draft } else { Dialect::Final };
        for t in ["java.lang.Object", "java.lang.String", "int", "long", "double", "java.util.List", "java.util.Map", "com.example.User"] {
            let arg = if t == "com.example.User" { user() } else { ArgumentConfig::new(t) };
            let s = sig(TargetProtocol::Bolt, dialect, vec![arg]);
            let body = json!([v.clone()]).to_string();
            if let Ok(values) = encode::arguments(&s, body.as_bytes()) {
                if let Ok(bytes) = encode::encode_call(&s, &values) {
                    // What was encoded decodes, in the dialect it was written in.
                    let mut d = Decoder::new(&bytes, draft);
                    d.read_object().unwrap();
                    let back = d.read().unwrap().value;
                    if t == "java.lang.Object" {
                        let same = back == v || v.to_string().contains('.') || v.to_string().contains('e');
                        prop_assert!(same, "{} -> {}", v, back);
                    }
                    prop_assert!(d.is_empty());
                }
            }
        }
    }

    #[test]
    fn arguments_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let s = sig(TargetProtocol::Dubbo, Dialect::Final, vec![user().named("u")]);
        if let Ok(values) = encode::arguments(&s, &bytes) {
            let _ = encode::encode_call(&s, &values);
        }
    }
}
