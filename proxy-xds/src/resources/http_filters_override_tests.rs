//! Envoy's per-route overrides (`typed_per_filter_config` keyed by an HCM filter's
//! name) onto `filter_overrides`, and HCM filters `disabled` onto the listener.

use envoy_types::pb::{
    envoy::{
        config::{
            core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
            listener::v3::{filter::ConfigType as FilterConfigType, Filter, FilterChain, Listener},
            rbac::v3::{
                permission, principal, rbac as rbac_pb, Permission, Policy, Principal,
                Rbac as RbacRules,
            },
            route::v3::FilterConfig,
        },
        extensions::filters::{
            http::{
                jwt_authn::v3::{per_route_config::RequirementSpecifier, PerRouteConfig},
                lua::v3::{lua_per_route::Override, LuaPerRoute},
                rbac::v3::{Rbac, RbacPerRoute},
            },
            network::http_connection_manager::v3::{
                http_connection_manager::{CodecType, RouteSpecifier},
                http_filter, HttpConnectionManager, HttpFilter, Rds,
            },
        },
    },
    google::protobuf::Any,
};
use prost::{Message, Name};
use proxy_core::config::FilterOverride;
use serde_json::json;

use super::*;

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// The one override a single-entry map yields, or the refusal's path.
fn one(key: &str, a: Any) -> Result<FilterOverride, String> {
    let mapped = per_filter_configs(&[(key.to_owned(), a)].into()).map_err(|e| e.path)?;
    assert!(mapped.filters.is_empty());
    Ok(mapped.overrides[key].clone())
}

fn admins_only() -> Rbac {
    Rbac {
        rules: Some(RbacRules {
            action: rbac_pb::Action::Allow as i32,
            policies: [(
                "admins".to_owned(),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(permission::Rule::Any(true)),
                    }],
                    principals: vec![Principal {
                        identifier: Some(principal::Identifier::Any(true)),
                    }],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn filter_config_disables_and_enables_by_name() {
    let off = any(&FilterConfig {
        disabled: true,
        ..Default::default()
    });
    assert_eq!(
        one("envoy.filters.http.jwt_authn", off),
        Ok(FilterOverride::Disabled)
    );
    // No config: the filter runs here with the listener's (one the HCM disables).
    assert_eq!(
        one("debug", any(&FilterConfig::default())),
        Ok(FilterOverride::Enabled)
    );
}

#[test]
fn rbac_per_route_replaces_the_policy_or_disables_it() {
    let replaced = one(
        "rbac",
        any(&RbacPerRoute {
            rbac: Some(admins_only()),
        }),
    )
    .unwrap();
    let FilterOverride::Config(section) = replaced else {
        panic!("a replaced config, got {replaced:?}");
    };
    assert_eq!(
        section.as_value(),
        &json!({
            "policies": [{ "name": "admins", "action": "allow",
                "principals": [{ "any": true }], "permissions": [{ "any": true }] }],
            "default_action": "deny",
        })
    );
    // Envoy: an absent rbac disables the global policy for the route.
    assert_eq!(
        one("rbac", any(&RbacPerRoute { rbac: None })),
        Ok(FilterOverride::Disabled)
    );
    // Wrapped in a FilterConfig, refusals name the field within.
    let mut bad = admins_only();
    bad.shadow_rules = Some(RbacRules::default());
    let wrapped = any(&FilterConfig {
        config: Some(any(&RbacPerRoute { rbac: Some(bad) })),
        ..Default::default()
    });
    assert_eq!(
        one("rbac", wrapped),
        Err("typed_per_filter_config[\"rbac\"].config.rbac.shadow_rules".into())
    );
}

#[test]
fn lua_per_route_disables_or_runs_an_inline_script() {
    let lua = |o: Override| {
        any(&LuaPerRoute {
            r#override: Some(o),
            ..Default::default()
        })
    };
    assert_eq!(
        one("lua", lua(Override::Disabled(true))),
        Ok(FilterOverride::Disabled)
    );
    let inline = envoy_types::pb::envoy::config::core::v3::DataSource {
        specifier: Some(
            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                "function on_request(req) end".into(),
            ),
        ),
        ..Default::default()
    };
    let FilterOverride::Config(section) = one("lua", lua(Override::SourceCode(inline))).unwrap()
    else {
        panic!("a replaced script");
    };
    assert_eq!(
        section.as_value(),
        &json!({ "script": { "source": "function on_request(req) end" } })
    );
    assert_eq!(
        one("lua", lua(Override::Name("named".into()))),
        Err("typed_per_filter_config[\"lua\"].name".into())
    );
    assert_eq!(
        one("lua", lua(Override::Disabled(false))),
        Err("typed_per_filter_config[\"lua\"].disabled".into())
    );
    let with_paths = any(&LuaPerRoute {
        r#override: Some(Override::Disabled(true)),
        package_paths: vec!["/x/?.lua".into()],
        ..Default::default()
    });
    assert_eq!(
        one("lua", with_paths),
        Err("typed_per_filter_config[\"lua\"].package_paths".into())
    );
}

#[test]
fn jwt_per_route_disables_and_refuses_named_requirements() {
    let jwt = |r: RequirementSpecifier| {
        any(&PerRouteConfig {
            requirement_specifier: Some(r),
        })
    };
    assert_eq!(
        one("jwt", jwt(RequirementSpecifier::Disabled(true))),
        Ok(FilterOverride::Disabled)
    );
    assert_eq!(
        one(
            "jwt",
            jwt(RequirementSpecifier::RequirementName("r".into()))
        ),
        Err("typed_per_filter_config[\"jwt\"].requirement_name".into())
    );
    assert_eq!(
        one("jwt", any(&PerRouteConfig::default())),
        Err("typed_per_filter_config[\"jwt\"].requirement_specifier".into())
    );
}

#[test]
fn a_more_specific_level_wins() {
    let outer = per_filter_configs(
        &[
            ("a".to_owned(), any(&RbacPerRoute { rbac: None })),
            ("b".to_owned(), any(&FilterConfig::default())),
        ]
        .into(),
    )
    .unwrap();
    let inner =
        per_filter_configs(&[("a".to_owned(), any(&FilterConfig::default()))].into()).unwrap();
    let merged = outer.then(inner);
    assert_eq!(merged.overrides["a"], FilterOverride::Enabled);
    assert_eq!(merged.overrides["b"], FilterOverride::Enabled);
}

fn listener_with(filters: Vec<HttpFilter>) -> Listener {
    let hcm = HttpConnectionManager {
        codec_type: CodecType::Http1 as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: "r".into(),
        })),
        http_filters: filters,
        ..HttpConnectionManager::default()
    };
    Listener {
        name: "web".into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(8080)),
                ..SocketAddress::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: crate::resources::HCM_NAME.into(),
                config_type: Some(FilterConfigType::TypedConfig(Any {
                    type_url: crate::resources::HCM_TYPE.into(),
                    value: hcm.encode_to_vec(),
                })),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}

fn rbac_filter(name: &str, disabled: bool) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        disabled,
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&admins_only()))),
        ..HttpFilter::default()
    }
}

fn router() -> HttpFilter {
    HttpFilter {
        name: crate::resources::ROUTER_NAME.into(),
        ..HttpFilter::default()
    }
}

#[test]
fn hcm_filters_are_named_and_kept_disabled() {
    let l = listener_with(vec![
        rbac_filter("envoy.filters.http.rbac", false),
        rbac_filter("admin-only", true),
        router(),
    ]);
    let x = crate::resources::listener(&l).unwrap();
    let f = &x.config.http_filters;
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].name(), f[0].typed.as_str(), f[0].disabled),
        ("envoy.filters.http.rbac", "rbac", false)
    );
    assert_eq!((f[1].name(), f[1].disabled), ("admin-only", true));

    let dup = listener_with(vec![
        rbac_filter("same", false),
        rbac_filter("same", false),
        router(),
    ]);
    let err = crate::resources::listener(&dup).unwrap_err().to_string();
    assert!(
        err.contains("http_filters[1].name: \"same\": another HTTP filter has this name"),
        "{err}"
    );
}

#[test]
fn overrides_of_filters_the_listener_lacks_are_left_out_when_joined() {
    use proxy_core::config::{RouteConfig, VirtualHostConfig};

    let l = listener_with(vec![
        rbac_filter("envoy.filters.http.rbac", false),
        router(),
    ]);
    let mut config = crate::resources::listener(&l).unwrap().config;
    config.virtual_hosts = vec![VirtualHostConfig::new("v", ["*"])
        .override_filter("envoy.filters.http.jwt_authn", FilterOverride::Disabled)
        .route(
            RouteConfig::new("a")
                .override_filter("envoy.filters.http.rbac", FilterOverride::Disabled)
                .override_filter("envoy.filters.http.lua", FilterOverride::Disabled),
        )];
    keep_overrides_of_its_filters(&mut config);
    let vhost = &config.virtual_hosts[0];
    assert!(vhost.filter_overrides.is_empty());
    assert_eq!(
        vhost.routes[0].filter_overrides.keys().collect::<Vec<_>>(),
        ["envoy.filters.http.rbac"]
    );
}
