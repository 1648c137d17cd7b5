//! Where a listener's filters came from in its Envoy resource, so that a filter
//! section the registry refuses when the config is applied is NACKed at the xDS
//! field (`filter_chains[0].filters[1].typed_config.http_filters[4].typed_config.value.memory`)
//! rather than at the config model's (`http_filters[3].config.memory`): the two
//! indexes differ when filters are left out (disabled, optional, enforcing nothing)
//! or added (the transport socket's `tls`).

use std::collections::BTreeMap;

use super::XdsListener;
use crate::Refusal;

/// The config model's filter entries (`http_filters[3]`) and the xDS field each
/// came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FilterOrigins(Vec<Origin>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    /// `http_filters[3]`, `network_filters[0]`.
    model: String,
    /// The xDS field of the filter's config (`...http_filters[4].typed_config`).
    xds: String,
    /// Whether the section is a TypedStruct's `value`, field for field.
    typed_struct: bool,
}

impl FilterOrigins {
    /// Records that model entry `model` came from the config at `xds`.
    pub(crate) fn add(&mut self, model: String, xds: String, typed_struct: bool) {
        self.0.push(Origin {
            model,
            xds,
            typed_struct,
        });
    }

    /// Prefixes every recorded xDS field with `prefix` (`filter_chains[0].`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        for o in &mut self.0 {
            o.xds = format!("{prefix}{}", o.xds);
        }
        self
    }

    /// Appends `other`'s origins.
    pub(crate) fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// `http_filters[3].config.memory` as the xDS field path and the reason to give:
    /// a TypedStruct's section field for field (`...typed_config.value.memory`), an
    /// Envoy filter's config as a whole, the mapped section's path in the reason.
    fn locate(&self, path: &str, reason: &str) -> Option<(String, String)> {
        self.0.iter().find_map(|o| {
            let rest = path.strip_prefix(o.model.as_str())?;
            if !(rest.is_empty() || rest.starts_with('.')) {
                return None;
            }
            let inside = rest
                .strip_prefix(".config")
                .filter(|r| r.is_empty() || r.starts_with('.') || r.starts_with('['));
            Some(match inside {
                Some(field) if o.typed_struct => {
                    (format!("{}.value{field}", o.xds), reason.to_owned())
                }
                _ => (o.xds.clone(), format!("as this proxy's {path}: {reason}")),
            })
        })
    }
}

/// `r` (a refusal of the applied config, naming a listener) at the xDS field its
/// filter came from, when it is about a filter of one of `listeners`.
pub(crate) fn locate_filter(listeners: &BTreeMap<String, XdsListener>, r: Refusal) -> Refusal {
    let found = listeners
        .iter()
        .find(|(name, _)| format!("listener {name:?}") == r.resource)
        .and_then(|(_, l)| l.origins.locate(&r.path, &r.reason));
    match found {
        Some((path, reason)) => Refusal { path, reason, ..r },
        None => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_map_to_xds_fields() {
        let mut o = FilterOrigins::default();
        o.add(
            "http_filters[0]".into(),
            "http_filters[1].typed_config".into(),
            false,
        );
        o.add(
            "http_filters[1]".into(),
            "http_filters[3].typed_config".into(),
            true,
        );
        let o = o.within("filter_chains[0].filters[0].typed_config.");
        assert_eq!(
            o.locate("http_filters[1].config.script.source", "bad"),
            Some((
                "filter_chains[0].filters[0].typed_config.http_filters[3].typed_config.value.script.source".into(),
                "bad".into()
            ))
        );
        assert_eq!(
            o.locate("http_filters[0].config.policies[0]", "bad"),
            Some((
                "filter_chains[0].filters[0].typed_config.http_filters[1].typed_config".into(),
                "as this proxy's http_filters[0].config.policies[0]: bad".into()
            ))
        );
        assert_eq!(o.locate("http_filters[10].config", "x"), None);
        assert_eq!(o.locate("virtual_hosts[0]", "x"), None);
    }
}
