//! Unit tests of the HTTP filter mappings and their refusals.

use envoy_types::pb::{
    envoy::{
        config::{
            core::v3::{data_source, CidrRange, DataSource, RuntimeFractionalPercent},
            rbac::v3::{
                permission, principal, rbac as rbac_pb, Permission, Policy, Principal,
                Rbac as RbacRules,
            },
            route::v3::{route_match::PathSpecifier, FilterConfig, RouteMatch},
        },
        extensions::filters::http::{
            jwt_authn::v3::{
                jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType,
                requirement_rule::RequirementType, JwtAuthentication, JwtProvider, JwtRequirement,
                RequirementRule,
            },
            local_ratelimit::v3::LocalRateLimit,
            lua::v3::Lua,
            rbac::v3::Rbac,
        },
        r#type::v3::{FractionalPercent, TokenBucket},
    },
    google::protobuf::{
        value::Kind, Any, Duration as PbDuration, ListValue, Struct, UInt32Value, Value,
    },
};
use prost::{Message, Name};
use serde_json::json;

use super::*;
use crate::resources::typed_struct::{TypedStruct, TYPED_STRUCT_TYPE, UDPA_TYPED_STRUCT_TYPE};

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn num(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn typed_struct(type_url: &str, wrapper: &str, fields: Vec<(&str, Value)>) -> Any {
    let ts = TypedStruct {
        type_url: type_url.into(),
        value: Some(Struct {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }),
    };
    Any {
        type_url: wrapper.into(),
        value: ts.encode_to_vec(),
    }
}

#[test]
fn a_typed_struct_names_our_filter_and_carries_its_section() {
    let rate = Struct {
        fields: [
            ("requests".to_owned(), num(10.0)),
            ("per".to_owned(), string("1s")),
        ]
        .into(),
    };
    let a = typed_struct(
        "type.googleapis.com/proxy.filters.local_rate_limit",
        TYPED_STRUCT_TYPE,
        vec![(
            "rate",
            Value {
                kind: Some(Kind::StructValue(rate)),
            },
        )],
    );
    let f = http_filter(&a).unwrap().unwrap();
    assert_eq!(f.typed, "local_rate_limit");
    assert_eq!(
        f.config.as_value(),
        &json!({ "rate": { "requests": 10, "per": "1s" } })
    );
    let list = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: vec![string("x")],
        })),
    };
    let old = typed_struct(
        "header_rewrite",
        UDPA_TYPED_STRUCT_TYPE,
        vec![("remove", list)],
    );
    let f = http_filter(&old).unwrap().unwrap();
    assert_eq!(
        (f.typed.as_str(), f.config.as_value()),
        ("header_rewrite", &json!({ "remove": ["x"] }))
    );
}

#[test]
fn a_typed_struct_of_another_type_is_refused_at_type_url() {
    let a = typed_struct("type.googleapis.com/acme.Filter", TYPED_STRUCT_TYPE, vec![]);
    let err = http_filter(&a).unwrap_err();
    assert_eq!(err.path, "type_url", "{err}");
    let unknown = Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors".into(),
        value: vec![],
    };
    assert_eq!(http_filter(&unknown).unwrap_err().path, "type_url");
}

fn allow_policy() -> Policy {
    Policy {
        principals: vec![Principal {
            identifier: Some(principal::Identifier::DirectRemoteIp(CidrRange {
                address_prefix: "10.0.0.0".into(),
                prefix_len: Some(UInt32Value { value: 8 }),
            })),
        }],
        permissions: vec![Permission {
            rule: Some(permission::Rule::NotRule(Box::new(Permission {
                rule: Some(permission::Rule::Any(true)),
            }))),
        }],
        ..Default::default()
    }
}

#[test]
fn rbac_rules_become_policies_and_the_opposite_default() {
    let r = Rbac {
        rules: Some(RbacRules {
            action: rbac_pb::Action::Allow as i32,
            policies: [("b".to_owned(), allow_policy())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let f = http_filter(&any(&r)).unwrap().unwrap();
    assert_eq!(f.typed, "rbac");
    assert_eq!(
        f.config.as_value(),
        &json!({
            "policies": [{ "name": "b", "action": "allow",
                "principals": [{ "source_ip": "10.0.0.0/8" }],
                "permissions": [{ "not": { "any": true } }] }],
            "default_action": "deny",
        })
    );
}

#[test]
fn rbac_refuses_what_it_cannot_check_by_path() {
    let mut p = allow_policy();
    p.principals[0].identifier = Some(principal::Identifier::RemoteIp(CidrRange::default()));
    let r = Rbac {
        rules: Some(RbacRules {
            action: 0,
            policies: [("p".to_owned(), p)].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = http_filter(&any(&r)).unwrap_err();
    assert_eq!(
        err.path, "rules.policies[\"p\"].principals[0].remote_ip",
        "{err}"
    );
    let shadow = Rbac {
        shadow_rules: Some(RbacRules::default()),
        ..Default::default()
    };
    assert_eq!(http_filter(&any(&shadow)).unwrap_err().path, "shadow_rules");
    let log = Rbac {
        rules: Some(RbacRules {
            action: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(http_filter(&any(&log)).unwrap_err().path, "rules.action");
}

fn full() -> Option<RuntimeFractionalPercent> {
    Some(RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: 0,
        }),
        runtime_key: "x".into(),
    })
}

#[test]
fn local_rate_limit_maps_the_bucket_at_100_percent_only() {
    let mut l = LocalRateLimit {
        stat_prefix: "rl".into(),
        token_bucket: Some(TokenBucket {
            max_tokens: 5,
            tokens_per_fill: Some(UInt32Value { value: 2 }),
            fill_interval: Some(PbDuration {
                seconds: 1,
                nanos: 500_000_000,
            }),
        }),
        filter_enabled: full(),
        filter_enforced: full(),
        ..Default::default()
    };
    let f = http_filter(&any(&l)).unwrap().unwrap();
    assert_eq!(f.typed, "local_rate_limit");
    assert_eq!(
        f.config.as_value(),
        &json!({ "rate": { "requests": 2, "per": "1500ms", "burst": 5 } })
    );
    l.filter_enforced = None;
    assert!(
        http_filter(&any(&l)).unwrap().is_none(),
        "not enforced: left out"
    );
    l.filter_enforced = full();
    l.filter_enforced
        .as_mut()
        .unwrap()
        .default_value
        .as_mut()
        .unwrap()
        .numerator = 50;
    assert_eq!(
        http_filter(&any(&l)).unwrap_err().path,
        "filter_enforced.default_value"
    );
    l.filter_enforced = full();
    l.descriptors.push(Default::default());
    assert_eq!(http_filter(&any(&l)).unwrap_err().path, "descriptors");
}

#[test]
fn lua_takes_an_inline_script_and_refuses_envoy_scripts() {
    let src = |s: &str| Lua {
        default_source_code: Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(s.into())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let f = http_filter(&any(&src("function on_request(req) end")))
        .unwrap()
        .unwrap();
    assert_eq!(
        f.config.as_value(),
        &json!({ "script": { "source": "function on_request(req) end" } })
    );
    let err = http_filter(&any(&src("function envoy_on_request(h) end"))).unwrap_err();
    assert_eq!(err.path, "default_source_code.inline_string", "{err}");
    let mut paths = src("function on_request(req) end");
    paths.package_paths.push("/x/?.lua".into());
    assert_eq!(http_filter(&any(&paths)).unwrap_err().path, "package_paths");
}

fn jwt(provider: JwtProvider, prefix: &str) -> JwtAuthentication {
    JwtAuthentication {
        providers: [("idp".to_owned(), provider)].into(),
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
                ..Default::default()
            }),
            requirement_type: Some(RequirementType::Requires(JwtRequirement {
                requires_type: Some(RequiresType::ProviderName("idp".into())),
            })),
        }],
        ..Default::default()
    }
}

fn provider() -> JwtProvider {
    JwtProvider {
        issuer: "https://idp".into(),
        audiences: vec!["api".into()],
        forward: true,
        jwks_source_specifier: Some(JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(
                r#"{"keys":[]}"#.into(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn jwt_authentication_maps_one_provider_for_every_path() {
    let f = http_filter(&any(&jwt(provider(), "/"))).unwrap().unwrap();
    assert_eq!(f.typed, "jwt_auth");
    assert_eq!(
        f.config.as_value(),
        &json!({
            "algorithms": ["RS256", "ES256", "EdDSA"],
            "jwks": { "inline": { "keys": [] } },
            "from": [{ "header": { "name": "authorization", "prefix": "Bearer " } }, { "query": "access_token" }],
            "clock_skew": "60s",
            "require_exp": false,
            "issuers": ["https://idp"],
            "audiences": ["api"],
        })
    );
}

#[test]
fn jwt_authentication_refuses_what_differs_by_path() {
    assert_eq!(
        http_filter(&any(&jwt(provider(), "/api")))
            .unwrap_err()
            .path,
        "rules[0].match"
    );
    let mut p = provider();
    p.forward = false;
    assert_eq!(
        http_filter(&any(&jwt(p, "/"))).unwrap_err().path,
        "providers[\"idp\"].forward"
    );
    let mut p = provider();
    p.from_cookies.push("session".into());
    assert_eq!(
        http_filter(&any(&jwt(p, "/"))).unwrap_err().path,
        "providers[\"idp\"].from_cookies"
    );
    let mut none = jwt(provider(), "/");
    none.rules.clear();
    assert_eq!(http_filter(&any(&none)).unwrap_err().path, "rules");
}

#[test]
fn per_route_typed_structs_add_our_filters_and_optional_unknowns_are_left_out() {
    let own = typed_struct("proxy.filters.fault", TYPED_STRUCT_TYPE, vec![]);
    let wrapped = any(&FilterConfig {
        config: Some(own.clone()),
        is_optional: false,
        disabled: false,
    });
    let map = [("b".to_owned(), wrapped), ("a".to_owned(), own)].into();
    let mapped = per_filter_configs(&map).unwrap();
    assert_eq!(
        mapped
            .filters
            .iter()
            .map(|f| f.typed.as_str())
            .collect::<Vec<_>>(),
        ["fault", "fault"]
    );
    assert!(mapped.overrides.is_empty());

    let cors = Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy".into(),
        value: vec![],
    };
    let optional = any(&FilterConfig {
        config: Some(cors.clone()),
        is_optional: true,
        disabled: false,
    });
    assert_eq!(
        per_filter_configs(&[("x".to_owned(), optional)].into()).unwrap(),
        PerFilterConfigs::default()
    );
    assert_eq!(
        per_filter_configs(&[("x".to_owned(), cors)].into())
            .unwrap_err()
            .path,
        "typed_per_filter_config[\"x\"].type_url"
    );
}

#[test]
fn fault_maps_fixed_delays_and_http_aborts() {
    use envoy_types::pb::envoy::extensions::filters::{
        common::fault::v3::{fault_delay::FaultDelaySecifier, FaultDelay},
        http::fault::v3::{fault_abort::ErrorType, FaultAbort, HttpFault},
    };
    let mut f = HttpFault {
        delay: Some(FaultDelay {
            percentage: Some(FractionalPercent {
                numerator: 5,
                denominator: 0,
            }),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                seconds: 0,
                nanos: 100_000_000,
            })),
        }),
        abort: Some(FaultAbort {
            percentage: Some(FractionalPercent {
                numerator: 2500,
                denominator: 1,
            }),
            error_type: Some(ErrorType::HttpStatus(503)),
            ..Default::default()
        }),
        delay_percent_runtime: "fault.http.delay.fixed_delay_percent".into(),
        ..Default::default()
    };
    let out = http_filter(&any(&f)).unwrap().unwrap();
    assert_eq!(out.typed, "fault");
    assert_eq!(
        out.config.as_value(),
        &json!({
            "delay": { "duration": "100ms", "delay_percent": 5.0 },
            "abort": { "status": 503, "abort_percent": 25.0 },
        })
    );
    f.abort.as_mut().unwrap().error_type = Some(ErrorType::GrpcStatus(14));
    assert_eq!(http_filter(&any(&f)).unwrap_err().path, "abort.grpc_status");
    f.abort = None;
    f.delay.as_mut().unwrap().percentage = None;
    assert_eq!(http_filter(&any(&f)).unwrap_err().path, "delay.percentage");
    f.delay = None;
    f.headers.push(Default::default());
    assert_eq!(http_filter(&any(&f)).unwrap_err().path, "headers");
}

#[test]
fn the_gateway_seed_written_with_xds_protos_is_taken_whole() {
    use envoy_types::pb::envoy::config::listener::v3::Listener;

    let seed = include_bytes!("../../fuzz/seeds/resource/lds-gateway-filters");
    let l = Listener::decode(&seed[1..]).expect("a listener");
    let x = crate::resources::listener(&l).expect("accepted");
    let names = |v: &[TypedConfig]| v.iter().map(|f| f.typed.clone()).collect::<Vec<_>>();
    assert_eq!(names(&x.config.network_filters), ["connection_limit"]);
    assert_eq!(
        x.config
            .http_filters
            .iter()
            .map(|f| f.typed.clone())
            .collect::<Vec<_>>(),
        ["jwt_auth", "local_rate_limit", "rbac", "fault", "lua"]
    );
    let jwt = x.config.http_filters[0].config.as_value();
    assert_eq!(
        jwt["jwks"],
        json!({ "remote": { "url": "https://idp.example/jwks.json", "timeout": "2000ms", "max_age": "300000ms" } })
    );
    assert_eq!(
        jwt["claims_to_headers"],
        json!([{ "claim": "sub", "header": "x-user" }])
    );
    let rbac = x.config.http_filters[2].config.as_value();
    assert_eq!(
        rbac["policies"][0]["principals"],
        json!([{ "identity": { "prefix": "spiffe://cluster.local/" } }])
    );
    assert_eq!(
        rbac["policies"][0]["permissions"],
        json!([{ "method": ["GET"] }])
    );
    assert_eq!(
        x.config.http_filters[3].config.as_value(),
        &json!({ "abort": { "status": 503, "abort_percent": 1.0 } })
    );
}
