//! RDS building blocks: a `RouteMatch` into the route's match, Envoy's header and
//! string matchers into proxy-core's one `HeaderMatch` / `StringMatch`, and header
//! mutations (`HeaderValueOption`).

use envoy_types::pb::envoy::{
    config::{
        core::v3::{header_value_option::HeaderAppendAction, HeaderValueOption},
        route::v3::{header_matcher::HeaderMatchSpecifier, route_match::PathSpecifier},
        route::v3::{HeaderMatcher, RouteMatch},
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher},
};
use http::HeaderName;
use proxy_core::{
    config::{HeaderValueConfig, PathMatchConfig, RouteMatchConfig},
    matcher::{Header, HeaderMatch, Pattern, StringMatch},
};

use super::{fields_http as fields, refuse_leftover};
use crate::Refusal;

/// A route's match. Prefix, path and safe_regex (the whole path, without the query)
/// map one to one; `:method` header matchers become the route's methods; other
/// pseudo-headers, case-insensitive matching, query parameters, runtime fractions
/// and the rest are refused.
pub(crate) fn route_match(m: &RouteMatch) -> Result<RouteMatchConfig, Refusal> {
    let mut rest = m.clone();
    rest.path_specifier = None;
    rest.headers.clear();
    if rest.case_sensitive.as_ref().is_some_and(|c| c.value) {
        rest.case_sensitive = None;
    }
    refuse_leftover(&rest, fields::ROUTE_MATCH)?;
    let path = match &m.path_specifier {
        None => {
            return Err(Refusal::new(
                "",
                "path_specifier",
                "a route match needs prefix, path or safe_regex",
            ))
        }
        Some(PathSpecifier::Prefix(p)) if p.is_empty() => None,
        Some(PathSpecifier::Prefix(p)) => Some(PathMatchConfig::Prefix(slash("prefix", p)?)),
        Some(PathSpecifier::Path(p)) => Some(PathMatchConfig::Exact(slash("path", p)?)),
        Some(PathSpecifier::SafeRegex(r)) => {
            let pattern = regex(r).map_err(|e| e.within("safe_regex"))?;
            Some(PathMatchConfig::Regex(pattern.as_str().to_owned()))
        }
        Some(PathSpecifier::ConnectMatcher(_)) => return Err(unsupported("connect_matcher")),
        Some(PathSpecifier::PathSeparatedPrefix(_)) => {
            return Err(unsupported("path_separated_prefix"))
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => return Err(unsupported("path_match_policy")),
    };
    let mut methods = Vec::new();
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let at = format!("headers[{i}]");
        if h.name == ":method" {
            methods.push(method(h).map_err(|r| r.within(&at))?);
        } else {
            headers.extend(header_match(h).map_err(|r| r.within(&at))?);
        }
    }
    if methods.len() > 1 {
        return Err(Refusal::new(
            "",
            "headers",
            "more than one :method matcher (they could never hold together)",
        ));
    }
    Ok(RouteMatchConfig {
        path,
        methods,
        headers,
    })
}

fn slash(field: &str, p: &str) -> Result<String, Refusal> {
    if p.starts_with('/') {
        Ok(p.to_owned())
    } else {
        Err(Refusal::new(
            "",
            field,
            format!("{p:?} must start with '/' (it could match no path)"),
        ))
    }
}

fn unsupported(field: &str) -> Refusal {
    Refusal::new("", field, "not supported: it would change behaviour")
}

/// A `:method` matcher: only an exact, non-inverted method.
fn method(h: &HeaderMatcher) -> Result<String, Refusal> {
    #[allow(deprecated)]
    let exact = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(m)) => Some(m.clone()),
        Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(m)),
            ignore_case: false,
        })) => Some(m.clone()),
        _ => None,
    };
    match exact {
        Some(m) if !h.invert_match && !h.treat_missing_header_as_empty && !m.is_empty() => Ok(m),
        _ => Err(Refusal::new(
            "",
            "name",
            "a :method matcher must be an exact match, not inverted",
        )),
    }
}

/// One Envoy header matcher as proxy-core conditions (all must hold). An inverted
/// value matcher does not match a missing header in Envoy, so it becomes "present"
/// and "value does not match".
pub(crate) fn header_match(h: &HeaderMatcher) -> Result<Vec<HeaderMatch>, Refusal> {
    let mut rest = h.clone();
    rest.name.clear();
    rest.invert_match = false;
    rest.header_match_specifier = None;
    refuse_leftover(&rest, fields::HEADER_MATCHER)?;
    // `:authority` is a condition on the request's authority, which core's `host`
    // condition is (it sees HTTP/2's `:authority` and HTTP/1.1's Host alike).
    if h.name.starts_with(':') && h.name != ":authority" {
        return Err(Refusal::new(
            "",
            "name",
            format!(
                "{:?}: pseudo-headers other than :method and :authority are not supported",
                h.name
            ),
        ));
    }
    let name = h.name.parse::<Header>().map_err(|_| {
        Refusal::new(
            "",
            "name",
            format!("{:?} is not a valid header name", h.name),
        )
    })?;
    let nonempty = |field: &str, s: &String| {
        if s.is_empty() {
            Err(Refusal::new("", field, "must not be empty"))
        } else {
            Ok(s.clone())
        }
    };
    #[allow(deprecated)]
    let value = match &h.header_match_specifier {
        None => None,
        Some(HeaderMatchSpecifier::PresentMatch(present)) => {
            let present = *present != h.invert_match;
            return Ok(vec![HeaderMatch {
                name,
                value: None,
                invert: !present,
            }]);
        }
        Some(HeaderMatchSpecifier::ExactMatch(s)) => Some(StringMatch::Exact(s.clone())),
        Some(HeaderMatchSpecifier::PrefixMatch(s)) => {
            Some(StringMatch::Prefix(nonempty("prefix_match", s)?))
        }
        Some(HeaderMatchSpecifier::SuffixMatch(s)) => {
            Some(StringMatch::Suffix(nonempty("suffix_match", s)?))
        }
        Some(HeaderMatchSpecifier::ContainsMatch(s)) => {
            Some(StringMatch::Contains(nonempty("contains_match", s)?))
        }
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => Some(StringMatch::Regex(
            regex(r).map_err(|e| e.within("safe_regex_match"))?,
        )),
        Some(HeaderMatchSpecifier::StringMatch(s)) => {
            Some(string_match(s).map_err(|e| e.within("string_match"))?)
        }
        Some(HeaderMatchSpecifier::RangeMatch(_)) => return Err(unsupported("range_match")),
    };
    let present = HeaderMatch {
        name: name.clone(),
        value: None,
        invert: false,
    };
    Ok(match (value, h.invert_match) {
        (None, false) => vec![present],
        // No specifier means "present"; inverted, "absent".
        (None, true) => vec![HeaderMatch {
            invert: true,
            ..present
        }],
        (Some(v), false) => vec![HeaderMatch {
            name,
            value: Some(v),
            invert: false,
        }],
        (Some(v), true) => vec![
            present,
            HeaderMatch {
                name,
                value: Some(v),
                invert: true,
            },
        ],
    })
}

/// An Envoy `StringMatcher` as proxy-core's `StringMatch`; `ignore_case` and custom
/// matchers are refused.
pub(crate) fn string_match(s: &StringMatcher) -> Result<StringMatch, Refusal> {
    if s.ignore_case {
        return Err(unsupported("ignore_case"));
    }
    match &s.match_pattern {
        None => Err(Refusal::new("", "match_pattern", "a pattern is required")),
        Some(MatchPattern::Exact(v)) => Ok(StringMatch::Exact(v.clone())),
        Some(MatchPattern::Prefix(v)) => Ok(StringMatch::Prefix(v.clone())),
        Some(MatchPattern::Suffix(v)) => Ok(StringMatch::Suffix(v.clone())),
        Some(MatchPattern::Contains(v)) => Ok(StringMatch::Contains(v.clone())),
        Some(MatchPattern::SafeRegex(r)) => Ok(StringMatch::Regex(
            regex(r).map_err(|e| e.within("safe_regex"))?,
        )),
        Some(MatchPattern::Custom(_)) => Err(unsupported("custom")),
    }
}

/// An Envoy `RegexMatcher` (RE2, the whole value) as a pattern under proxy-core's
/// regex rule (the whole value, bounded size).
fn regex(r: &RegexMatcher) -> Result<Pattern, Refusal> {
    let mut rest = r.clone();
    rest.regex.clear();
    rest.engine_type = None;
    refuse_leftover(&rest, fields::REGEX_MATCHER)?;
    r.regex
        .parse::<Pattern>()
        .map_err(|e| Refusal::new("", "regex", e))
}

/// Header additions. `append` (or `append_action` APPEND_IF_EXISTS_OR_ADD) appends,
/// OVERWRITE_IF_EXISTS_OR_ADD replaces; ADD_IF_ABSENT and OVERWRITE_IF_EXISTS are
/// refused, as are values with `%` (Envoy's substitution formatters). An empty value
/// is left out unless `keep_empty_value`, as Envoy does.
pub(crate) fn headers_to_add(
    field: &str,
    options: &[HeaderValueOption],
) -> Result<Vec<HeaderValueConfig>, Refusal> {
    let mut out = Vec::new();
    for (i, o) in options.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(h) = header_value(o).map_err(|r| r.within(&at))? {
            out.push(h);
        }
    }
    Ok(out)
}

#[allow(deprecated)]
fn header_value(o: &HeaderValueOption) -> Result<Option<HeaderValueConfig>, Refusal> {
    let mut rest = o.clone();
    rest.header = None;
    rest.append = None;
    rest.append_action = 0;
    rest.keep_empty_value = false;
    refuse_leftover(&rest, fields::HEADER_VALUE_OPTION)?;
    let Some(h) = &o.header else {
        return Err(Refusal::new("", "header", "is required"));
    };
    let append = match (
        o.append.as_ref(),
        HeaderAppendAction::try_from(o.append_action),
    ) {
        (Some(a), Ok(HeaderAppendAction::AppendIfExistsOrAdd)) => a.value,
        (Some(_), _) => {
            return Err(Refusal::new(
                "",
                "append",
                "append and append_action are both set",
            ))
        }
        (None, Ok(HeaderAppendAction::AppendIfExistsOrAdd)) => true,
        (None, Ok(HeaderAppendAction::OverwriteIfExistsOrAdd)) => false,
        (None, Ok(other)) => {
            return Err(Refusal::new(
                "",
                "append_action",
                format!("{} is not supported", other.as_str_name()),
            ))
        }
        (None, Err(_)) => {
            return Err(Refusal::new(
                "",
                "append_action",
                format!("unknown action {}", o.append_action),
            ))
        }
    };
    let value = if h.raw_value.is_empty() {
        h.value.clone()
    } else if h.value.is_empty() {
        String::from_utf8(h.raw_value.clone()).map_err(|_| {
            Refusal::new(
                "",
                "header.raw_value",
                "only UTF-8 header values are supported",
            )
        })?
    } else {
        return Err(Refusal::new(
            "",
            "header.raw_value",
            "value and raw_value are both set",
        ));
    };
    if value.contains('%') {
        return Err(Refusal::new(
            "",
            "header.value",
            format!("{value:?}: substitution formatters (%...%) are not supported"),
        ));
    }
    header_name("header.key", &h.key)?;
    if value.is_empty() && !o.keep_empty_value {
        return Ok(None);
    }
    Ok(Some(HeaderValueConfig {
        name: h.key.clone(),
        value,
        append,
    }))
}

/// Checks a header name to add or remove, refusing pseudo-headers and `host`.
pub(crate) fn header_name(field: &str, name: &str) -> Result<(), Refusal> {
    let valid = HeaderName::from_bytes(name.as_bytes()).is_ok();
    if !valid || name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(Refusal::new(
            "",
            field,
            format!("{name:?} is not a header name that can be changed"),
        ));
    }
    Ok(())
}
