//! What a script sees: `req` and `resp` as Lua userdata over the request's and the
//! response's head. Every bad input raises a Lua error; nothing here panics.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{
    header::{HeaderMap, HeaderName, HeaderValue},
    uri::PathAndQuery,
    Method, StatusCode, Uri,
};
use mlua::{UserData, UserDataMethods, Value};
use proxy_core::{Body, HttpResponse};

/// The request's head, lent to `on_request`.
#[derive(Debug)]
pub(crate) struct RequestView {
    pub(crate) parts: http::request::Parts,
    pub(crate) peer: Option<SocketAddr>,
    /// Set by `req:respond(...)`.
    pub(crate) reply: Option<Reply>,
}

/// A local answer given by the script.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    pub(crate) fn into_response(self) -> HttpResponse {
        let mut resp = HttpResponse::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// The response's head, lent to `on_response`.
#[derive(Debug)]
pub(crate) struct ResponseView {
    pub(crate) parts: http::response::Parts,
}

trait Headers {
    fn headers(&mut self) -> &mut HeaderMap;
}

impl Headers for RequestView {
    fn headers(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }
}

impl Headers for ResponseView {
    fn headers(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }
}

fn bad(what: &str, value: &[u8]) -> mlua::Error {
    mlua::Error::runtime(format!(
        "invalid {what}: {:?}",
        String::from_utf8_lossy(value)
    ))
}

fn name(s: &mlua::LuaString) -> mlua::Result<HeaderName> {
    let b = s.as_bytes();
    HeaderName::from_bytes(&b).map_err(|_| bad("header name", &b))
}

/// Headers that frame the message or the connection: the proxy sets them, a script
/// may read but not write them (a wrong `content-length` would desynchronize the
/// peers).
pub(super) const MANAGED: [HeaderName; 8] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::UPGRADE,
    http::header::TE,
    http::header::TRAILER,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// A header name the script may write.
fn writable(s: &mlua::LuaString) -> mlua::Result<HeaderName> {
    let n = name(s)?;
    if MANAGED.contains(&n) {
        return Err(mlua::Error::runtime(format!(
            "header {n} is managed by the proxy"
        )));
    }
    Ok(n)
}

fn value(s: &mlua::LuaString) -> mlua::Result<HeaderValue> {
    let b = s.as_bytes();
    HeaderValue::from_bytes(&b).map_err(|_| bad("header value", &b))
}

fn status(n: i64) -> mlua::Result<StatusCode> {
    u16::try_from(n)
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| mlua::Error::runtime(format!("invalid status: {n}")))
}

/// The header methods both views share.
fn add_header_methods<T: Headers + UserData + 'static, M: UserDataMethods<T>>(m: &mut M) {
    m.add_method_mut("header", |lua, this, n: mlua::LuaString| {
        match this.headers().get(name(&n)?) {
            Some(v) => lua.create_string(v.as_bytes()).map(Value::String),
            None => Ok(Value::Nil),
        }
    });
    m.add_method_mut("header_values", |lua, this, n: mlua::LuaString| {
        let values = this.headers().get_all(name(&n)?);
        lua.create_sequence_from(
            values
                .iter()
                .map(|v| lua.create_string(v.as_bytes()))
                .collect::<mlua::Result<Vec<_>>>()?,
        )
    });
    m.add_method_mut(
        "set_header",
        |_, this, (n, v): (mlua::LuaString, mlua::LuaString)| {
            let (n, v) = (writable(&n)?, value(&v)?);
            this.headers().insert(n, v);
            Ok(())
        },
    );
    m.add_method_mut(
        "add_header",
        |_, this, (n, v): (mlua::LuaString, mlua::LuaString)| {
            let (n, v) = (writable(&n)?, value(&v)?);
            this.headers().append(n, v);
            Ok(())
        },
    );
    m.add_method_mut("remove_header", |_, this, n: mlua::LuaString| {
        let n = writable(&n)?;
        this.headers().remove(n);
        Ok(())
    });
}

impl RequestView {
    /// Replaces the path and query, keeping scheme and authority.
    fn set_path_and_query(&mut self, path: &[u8], query: Option<&[u8]>) -> mlua::Result<()> {
        if path.first() != Some(&b'/') {
            return Err(bad("path (must start with `/`)", path));
        }
        if path.contains(&b'?') {
            return Err(bad("path (a query goes through `set_query`)", path));
        }
        let mut pq = path.to_vec();
        if let Some(q) = query {
            pq.push(b'?');
            pq.extend_from_slice(q);
        }
        let pq = PathAndQuery::from_maybe_shared(Bytes::from(pq))
            .map_err(|_| bad("path or query", path))?;
        let mut parts = self.parts.uri.clone().into_parts();
        parts.path_and_query = Some(pq);
        self.parts.uri = Uri::from_parts(parts).map_err(|_| bad("path", path))?;
        Ok(())
    }
}

impl UserData for RequestView {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        add_header_methods(m);
        m.add_method("method", |_, this, ()| {
            Ok(this.parts.method.as_str().to_owned())
        });
        m.add_method_mut("set_method", |_, this, v: mlua::LuaString| {
            let b = v.as_bytes();
            this.parts.method = Method::from_bytes(&b).map_err(|_| bad("method", &b))?;
            Ok(())
        });
        m.add_method("path", |_, this, ()| Ok(this.parts.uri.path().to_owned()));
        m.add_method("query", |_, this, ()| {
            Ok(this.parts.uri.query().map(str::to_owned))
        });
        m.add_method_mut("set_path", |_, this, p: mlua::LuaString| {
            let query = this.parts.uri.query().map(|q| q.as_bytes().to_vec());
            this.set_path_and_query(&p.as_bytes(), query.as_deref())
        });
        m.add_method_mut("set_query", |_, this, q: Option<mlua::LuaString>| {
            let path = this.parts.uri.path().as_bytes().to_vec();
            match q {
                Some(q) => this.set_path_and_query(&path, Some(&q.as_bytes())),
                None => this.set_path_and_query(&path, None),
            }
        });
        m.add_method("client_addr", |_, this, ()| {
            Ok(this.peer.map(|p| p.to_string()))
        });
        m.add_method("client_ip", |_, this, ()| {
            Ok(this.peer.map(|p| p.ip().to_string()))
        });
        m.add_method_mut(
            "respond",
            |_, this, (code, headers, body): (i64, Option<mlua::Table>, Option<mlua::LuaString>)| {
                let status = status(code)?;
                if status.is_informational() {
                    return Err(mlua::Error::runtime(format!(
                        "invalid status for an answer: {code}"
                    )));
                }
                let mut map = HeaderMap::new();
                if let Some(t) = headers {
                    for pair in t.pairs::<mlua::LuaString, mlua::LuaString>() {
                        let (n, v) = pair?;
                        map.append(writable(&n)?, value(&v)?);
                    }
                }
                let body = body.map(|b| Bytes::copy_from_slice(&b.as_bytes())).unwrap_or_default();
                this.reply = Some(Reply { status, headers: map, body });
                Ok(())
            },
        );
    }
}

impl UserData for ResponseView {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        add_header_methods(m);
        m.add_method("status", |_, this, ()| Ok(this.parts.status.as_u16()));
        m.add_method_mut("set_status", |_, this, code: i64| {
            this.parts.status = status(code)?;
            Ok(())
        });
    }
}
