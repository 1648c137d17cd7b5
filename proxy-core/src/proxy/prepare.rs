//! Preparing a request for an upstream: hop-by-hop headers, the URI form and
//! version of the cluster's protocol, Host, `x-forwarded-*`, route rewrites.

use http::{header, HeaderMap, HeaderName, HeaderValue, Uri, Version};

use super::{ConnInfo, Forwarded};
use crate::{cluster::Cluster, config::UpstreamProtocol, router::Route, HttpRequest};

pub(crate) fn request_authority(req: &HttpRequest) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), and
/// `HTTP2-Settings`, which belongs to an `h2c` upgrade (RFC 7540 3.2.1), never passed.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// The bit of `Connection` in [`hop_by_hop_present`].
const CONNECTION_BIT: u8 = 1;
/// The bit of `Upgrade` in [`hop_by_hop_present`].
const UPGRADE_BIT: u8 = 1 << 6;

/// Which of the hop-by-hop headers are in `headers`, a bit each (in the order of
/// [`HOP_BY_HOP`]): one pass over the names, no lookup.
fn hop_by_hop_present(headers: &HeaderMap) -> u8 {
    let mut present = 0u8;
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            present |= 1 << i;
        }
    }
    present
}

/// Removes hop-by-hop headers and those named in `Connection`. With `upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair is kept so that the upgrade passes through.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass to see which are there: usually none, or only `connection`.
    let present = hop_by_hop_present(headers);
    strip_present(headers, present, upgrade);
}

/// [`strip_hop_by_hop`] once the headers present are known (`present`, from
/// [`hop_by_hop_present`] on the same map).
fn strip_present(headers: &mut HeaderMap, present: u8, upgrade: bool) {
    if present == 0 {
        return;
    }
    if present & CONNECTION_BIT != 0 {
        let named = connection_listed(headers);
        for n in named {
            headers.remove(n);
        }
    }
    let upgrade_value = if upgrade && present & UPGRADE_BIT != 0 {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(h);
        }
    }
    if let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Whether the client asks for an upgrade this proxy passes on: `Upgrade` named in
/// `Connection`, as a sender must (RFC 9110 7.8; an `Upgrade` field alone is
/// removed with the other connection fields), and no `h2c` among the protocols. An
/// `h2c` upgrade would hand the client a connection to the upstream past routing and
/// filters, and HTTP/2 has dropped it (RFC 9113 3.1): such a request goes on as a
/// plain one.
fn passes_upgrade(headers: &HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
    };
    tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        && !tokens(header::UPGRADE).any(|t| {
            let name = t.split(|&b| b == b'/').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"h2c")
        })
}

/// The fields the `Connection` fields of `headers` name (every value), besides the
/// usual `close`, `keep-alive` and `upgrade`, which need no lookup (the latter two are
/// removed with the other connection fields anyway).
pub(crate) fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("keep-alive")
                && !t.eq_ignore_ascii_case("upgrade")
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// Prepares a request for a cluster outside any route: hop-by-hop headers removed,
/// the URI form and version of the cluster's protocol, Host kept.
pub(crate) fn prepare_for_cluster(req: &mut HttpRequest, cluster: &Cluster) {
    prepare_upstream_request(req, None, false, None, None, cluster);
}

pub(super) fn prepare_upstream_request(
    req: &mut HttpRequest,
    route: Option<&Route>,
    xff: bool,
    conn: Option<Forwarded>,
    via: Option<&super::Via>,
    cluster: &Cluster,
) {
    let protocol = &cluster.config.protocol;
    let downstream_version = req.version();
    let present = hop_by_hop_present(req.headers());
    // Upgrades pass through to HTTP/1.1 upstreams when the client asked for one.
    let upgrade = *protocol == UpstreamProtocol::Http1
        && req.version() == Version::HTTP_11
        && present & UPGRADE_BIT != 0
        && present & CONNECTION_BIT != 0
        && passes_upgrade(req.headers());
    let te_trailers = *protocol == UpstreamProtocol::Http2
        && req.headers().get(header::TE).is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    // The authority sent upstream: the rewrite, else the request's own. The request's
    // own Host field stays where it is for HTTP/1.1 (not read, not set again) unless a
    // `Connection` field may name it: then it is read now and set again below.
    let host = match route.and_then(|r| r.host_rewrite.as_ref()) {
        Some(h) => Some(h.clone()),
        None => match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None if *protocol != UpstreamProtocol::Http2 && present & CONNECTION_BIT == 0 => None,
            None => req.headers().get(header::HOST).cloned(),
        },
    };
    let rewritten =
        route.and_then(|r| r.rewrite_path(req.uri().path_and_query().map_or("/", |p| p.as_str())));
    match protocol {
        UpstreamProtocol::Http1 | UpstreamProtocol::Named(_) => {
            if let Some(path) = rewritten {
                if let Ok(uri) = Uri::try_from(path) {
                    *req.uri_mut() = uri;
                }
            } else if req.uri().scheme().is_some() {
                // Absolute-form (or an h2 downstream): HTTP/1.1 upstreams get origin-form.
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = Some(
                    req.uri()
                        .path_and_query()
                        .cloned()
                        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                );
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        UpstreamProtocol::Http2 => {
            // An HTTP/1.0 client may send no Host: the cluster's name stands in, as
            // for an HTTP/1.1 upstream, or `localhost` where the name is no authority.
            let auth = host.as_ref().and_then(|h| h.to_str().ok());
            let path = rewritten
                .as_deref()
                .unwrap_or_else(|| req.uri().path_and_query().map_or("/", |p| p.as_str()));
            let uri = [auth.unwrap_or(&cluster.name), "localhost"]
                .into_iter()
                .find_map(|a| {
                    Uri::builder()
                        .scheme("http")
                        .authority(a)
                        .path_and_query(path)
                        .build()
                        .ok()
                });
            if let Some(uri) = uri {
                *req.uri_mut() = uri;
            }
        }
    }
    let forwarded = match (xff, conn) {
        (false, _) => None,
        (true, Some(f)) => Some(f),
        (true, None) => req.extensions().get::<ConnInfo>().map(ConnInfo::forwarded),
    };
    let headers = req.headers_mut();
    strip_present(headers, present, upgrade);
    // An HTTP/1.1 upstream's request encoder leaves both out itself (it writes the
    // framing of the body as sent).
    if *protocol != UpstreamProtocol::Http1 {
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::EXPECT);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(Forwarded { peer_ip, tls }) = forwarded {
        if let Some(ip) = peer_ip {
            append_to_list(headers, X_FORWARDED_FOR, ip);
        }
        const HTTPS: HeaderValue = HeaderValue::from_static("https");
        const HTTP: HeaderValue = HeaderValue::from_static("http");
        headers.insert(X_FORWARDED_PROTO, if tls { HTTPS } else { HTTP });
    }
    match (protocol, host) {
        (UpstreamProtocol::Http1, Some(h)) => {
            headers.insert(header::HOST, h);
        }
        // An HTTP/1.0 client may leave `Host` out, and HTTP/1.1 requires it (RFC 9112
        // 3.2): the cluster's name stands in, as nginx sends its upstream's name.
        (UpstreamProtocol::Http1, None)
            if downstream_version == Version::HTTP_10 && !headers.contains_key(header::HOST) =>
        {
            if let Ok(name) = HeaderValue::from_str(&cluster.name) {
                headers.insert(header::HOST, name);
            }
        }
        (UpstreamProtocol::Http2, _) => {
            headers.remove(header::HOST);
        }
        _ => {}
    }
    if let Some(via) = via {
        append_to_list(headers, header::VIA, via.entry(downstream_version));
    }
    if let Some(route) = route.filter(|r| !r.request_headers.is_empty()) {
        route.request_headers.apply(headers);
    }
    match protocol {
        UpstreamProtocol::Http1 => *req.version_mut() = Version::HTTP_11,
        UpstreamProtocol::Http2 => *req.version_mut() = Version::HTTP_2,
        UpstreamProtocol::Named(_) => {}
    }
}

/// Appends `entry` to the list field `name` (`X-Forwarded-For` with the client's
/// address, `Via` with this proxy). Several fields of the name are one list in the
/// order they came (RFC 9110 5.3): they are joined into one field, the entry last, so
/// that no earlier hop is lost and the hop this proxy adds stays the rightmost, the
/// one an upstream that trusts this proxy reads.
pub(super) fn append_to_list(headers: &mut HeaderMap, name: HeaderName, entry: HeaderValue) {
    // One lookup of the name for both cases.
    match headers.entry(name) {
        http::header::Entry::Vacant(e) => {
            e.insert(entry);
        }
        http::header::Entry::Occupied(mut e) => {
            let earlier: usize = e.iter().map(|v| v.len() + 2).sum();
            let mut v = Vec::with_capacity(earlier + entry.len());
            for prev in e.iter() {
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(entry.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                // Replaces every earlier field: their values are all in `v`.
                e.insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_earlier_forwarded_for_field_is_kept_before_the_client() {
        let mut h = map(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("accept", "*/*"),
            ("x-forwarded-for", "198.51.100.2, 203.0.113.3"),
        ]);
        append_to_list(
            &mut h,
            X_FORWARDED_FOR,
            HeaderValue::from_static("127.0.0.1"),
        );
        let all: Vec<_> = h.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(
            all,
            ["192.0.2.1, 198.51.100.2, 203.0.113.3, 127.0.0.1"],
            "one field, earlier hops in order, the client last"
        );
        let mut none = map(&[("accept", "*/*")]);
        append_to_list(
            &mut none,
            X_FORWARDED_FOR,
            HeaderValue::from_static("127.0.0.1"),
        );
        assert_eq!(none[X_FORWARDED_FOR], "127.0.0.1");
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn keeps_the_upgrade_pair_when_upgrading() {
        let mut h = map(&[
            ("connection", "Upgrade, x-a"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("x-a"));
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn host_stays_for_an_http1_upstream_even_when_connection_names_it() {
        let cluster = Cluster::builder("app")
            .endpoint("127.0.0.1:9".parse().unwrap())
            .build()
            .unwrap();
        let request = |pairs: &[(&str, &str)]| {
            let mut req = HttpRequest::new(crate::Body::empty());
            *req.headers_mut() = map(pairs);
            prepare_for_cluster(&mut req, &cluster);
            req
        };
        let plain = request(&[("host", "a.example"), ("x-b", "1")]);
        assert_eq!(plain.headers()["host"], "a.example");
        assert_eq!(plain.headers().len(), 2);
        let named = request(&[
            ("host", "a.example"),
            ("connection", "host, x-b"),
            ("x-b", "1"),
        ]);
        assert_eq!(named.headers()["host"], "a.example");
        assert_eq!(named.headers().len(), 1, "{:?}", named.headers());
        let upgrade = request(&[
            ("host", "a.example"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade.headers()["upgrade"], "websocket");
        assert_eq!(upgrade.headers()["connection"], "upgrade");
    }
}
