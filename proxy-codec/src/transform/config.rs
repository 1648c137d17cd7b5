//! The typed config of [`JsonToRpcLayer`](super::JsonToRpcLayer) and the checked
//! call signature built from it.

use std::sync::Arc;

use proxy_core::{config::ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

/// The default cap on a JSON request body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The RPC protocol a JSON call is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetProtocol {
    /// SOFARPC Bolt: a hessian2 `SofaRequest` followed by the arguments.
    Bolt,
    /// Dubbo 2: the hessian2 invocation body.
    Dubbo,
}

/// Which hessian2 dialect the call is written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// The final Hessian 2.0 spec: Java SOFARPC and Dubbo servers, and Node servers
    /// on hessian.js 2.x (js-remoting-for-apache-dubbo).
    #[default]
    Final,
    /// The draft dialect hessian.js 1.x reads and writes: sofa-rpc-node's Bolt
    /// servers (sofa-bolt-node). Answers are read in either dialect whatever this is.
    Draft,
}

/// One argument (or one field of a class): its Java type, and its name when the
/// JSON body names arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentConfig {
    /// The name: a key of the JSON object body (required for class fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Java type: `java.lang.String`, `int`, `java.lang.Integer`, `long`,
    /// `java.lang.Long`, `double`, `java.lang.Double`, `boolean`,
    /// `java.lang.Boolean`, `java.util.List`, `java.util.Map`, `java.lang.Object`,
    /// or a class name with `fields`.
    #[serde(rename = "type")]
    pub java_type: String,
    /// The fields of a class (a POJO), in declaration order; sent as a hessian2
    /// object of that class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<ArgumentConfig>,
}

impl ArgumentConfig {
    /// An unnamed argument of `java_type`.
    pub fn new(java_type: &str) -> Self {
        Self {
            name: None,
            java_type: java_type.to_owned(),
            fields: Vec::new(),
        }
    }

    /// This argument, named `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

/// `json_to_rpc`: an HTTP POST with a JSON body becomes a generic RPC call.
///
/// ```yaml
/// typed: json_to_rpc
/// config:
///   protocol: dubbo
///   service: org.example.UserService
///   version: 1.0.0
///   group: gold
///   method: find
///   arguments:
///     - { name: id, type: long }
///     - name: filter
///       type: org.example.Filter
///       fields: [{ name: active, type: boolean }, { name: tags, type: java.util.List }]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonToRpcConfig {
    /// `bolt` or `dubbo`.
    pub protocol: TargetProtocol,
    /// The interface name.
    pub service: String,
    /// The service version (Bolt: part of the unique name `service:version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Dubbo group (an attachment); Bolt: the unique id (`service:version:group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The method name.
    pub method: String,
    /// The argument types, in order.
    #[serde(default)]
    pub arguments: Vec<ArgumentConfig>,
    /// The hessian2 dialect of the call; `final` when absent.
    #[serde(default)]
    pub dialect: Dialect,
    /// The largest JSON body read; 1 MiB when absent. A longer one gets 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<ByteSize>,
}

/// A Java type the encoder knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JavaType {
    /// `java.lang.String`.
    String,
    /// `int` (`boxed`: `java.lang.Integer`, which may be null).
    Int {
        /// Whether the boxed type.
        boxed: bool,
    },
    /// `long` / `java.lang.Long`.
    Long {
        /// Whether the boxed type.
        boxed: bool,
    },
    /// `double` / `java.lang.Double`.
    Double {
        /// Whether the boxed type.
        boxed: bool,
    },
    /// `boolean` / `java.lang.Boolean`.
    Boolean {
        /// Whether the boxed type.
        boxed: bool,
    },
    /// `java.util.List`: any JSON array.
    List,
    /// `java.util.Map`: any JSON object.
    Map,
    /// `java.lang.Object`: any JSON value.
    Object,
    /// A class with named fields, sent as a hessian2 object.
    Class(Arc<ClassType>),
}

/// A class argument's name and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassType {
    /// The Java class name.
    pub name: String,
    /// The fields, in order.
    pub fields: Vec<(String, JavaType)>,
}

impl JavaType {
    /// The Java name (`int`, `java.lang.String`, the class name).
    pub fn java_name(&self) -> &str {
        match self {
            Self::String => "java.lang.String",
            Self::Int { boxed: false } => "int",
            Self::Int { boxed: true } => "java.lang.Integer",
            Self::Long { boxed: false } => "long",
            Self::Long { boxed: true } => "java.lang.Long",
            Self::Double { boxed: false } => "double",
            Self::Double { boxed: true } => "java.lang.Double",
            Self::Boolean { boxed: false } => "boolean",
            Self::Boolean { boxed: true } => "java.lang.Boolean",
            Self::List => "java.util.List",
            Self::Map => "java.util.Map",
            Self::Object => "java.lang.Object",
            Self::Class(c) => &c.name,
        }
    }

    /// The JVM descriptor Dubbo sends (`I`, `Ljava/lang/String;`).
    pub fn descriptor(&self) -> String {
        match self {
            Self::Int { boxed: false } => "I".into(),
            Self::Long { boxed: false } => "J".into(),
            Self::Double { boxed: false } => "D".into(),
            Self::Boolean { boxed: false } => "Z".into(),
            other => format!("L{};", other.java_name().replace('.', "/")),
        }
    }

    /// Whether a JSON null is accepted.
    pub(crate) fn nullable(&self) -> bool {
        !matches!(
            self,
            Self::Int { boxed: false }
                | Self::Long { boxed: false }
                | Self::Double { boxed: false }
                | Self::Boolean { boxed: false }
        )
    }

    fn parse(arg: &ArgumentConfig, path: &str, depth: usize) -> Result<Self, ConfigError> {
        let t = arg.java_type.trim();
        let simple = match t {
            "java.lang.String" | "String" => Some(Self::String),
            "int" => Some(Self::Int { boxed: false }),
            "java.lang.Integer" => Some(Self::Int { boxed: true }),
            "long" => Some(Self::Long { boxed: false }),
            "java.lang.Long" => Some(Self::Long { boxed: true }),
            "double" => Some(Self::Double { boxed: false }),
            "java.lang.Double" => Some(Self::Double { boxed: true }),
            "boolean" => Some(Self::Boolean { boxed: false }),
            "java.lang.Boolean" => Some(Self::Boolean { boxed: true }),
            "java.util.List" => Some(Self::List),
            "java.util.Map" => Some(Self::Map),
            "java.lang.Object" => Some(Self::Object),
            _ => None,
        };
        if let Some(simple) = simple {
            if !arg.fields.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.fields"),
                    format!("{t} has no fields; only a class does"),
                ));
            }
            return Ok(simple);
        }
        if !is_class_name(t) {
            return Err(ConfigError::new(
                format!("{path}.type"),
                format!("{t:?} is not a supported Java type nor a class name"),
            ));
        }
        if arg.fields.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.fields"),
                format!("class {t} needs its fields"),
            ));
        }
        if depth >= MAX_CLASS_DEPTH {
            return Err(ConfigError::new(
                format!("{path}.fields"),
                format!("classes nested deeper than {MAX_CLASS_DEPTH}"),
            ));
        }
        let mut fields = Vec::with_capacity(arg.fields.len());
        for (i, f) in arg.fields.iter().enumerate() {
            let at = format!("{path}.fields[{i}]");
            let name = match f.name.as_deref().map(str::trim) {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => {
                    return Err(ConfigError::new(
                        format!("{at}.name"),
                        "a field needs a name",
                    ))
                }
            };
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("field {name:?} is declared twice"),
                ));
            }
            fields.push((name, Self::parse(f, &at, depth + 1)?));
        }
        Ok(Self::Class(Arc::new(ClassType {
            name: t.to_owned(),
            fields,
        })))
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// How deep class fields may nest classes.
const MAX_CLASS_DEPTH: usize = 16;

fn is_class_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

/// The checked call: what every request of a [`JsonToRpcLayer`](super::JsonToRpcLayer)
/// is encoded against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The target protocol.
    pub protocol: TargetProtocol,
    /// The interface name.
    pub service: String,
    /// The service version.
    pub version: Option<String>,
    /// The group (Dubbo) or unique id (Bolt).
    pub group: Option<String>,
    /// The method name.
    pub method: String,
    /// The arguments: name (if any) and type.
    pub arguments: Vec<(Option<String>, JavaType)>,
    /// The dialect calls are written in.
    pub dialect: Dialect,
}

impl Signature {
    /// Checks `config`, naming the field at fault (relative to the section).
    ///
    /// # Errors
    /// An empty service or method, an unknown type, a class without fields, names
    /// given to some arguments but not all, or a name used twice.
    pub fn from_config(config: &JsonToRpcConfig) -> Result<Self, ConfigError> {
        if !is_class_name(config.service.trim()) {
            return Err(ConfigError::new(
                "service",
                format!("{:?} is not an interface name", config.service),
            ));
        }
        let method = config.method.trim();
        if !is_class_name(method) || method.contains('.') {
            return Err(ConfigError::new(
                "method",
                format!("{:?} is not a method name", config.method),
            ));
        }
        for (field, value) in [("version", &config.version), ("group", &config.group)] {
            if let Some(v) = value {
                if !v
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !"/?#%".contains(c))
                {
                    return Err(ConfigError::new(
                        field,
                        format!("{v:?} has characters a service name cannot carry"),
                    ));
                }
            }
        }
        let named = config.arguments.iter().filter(|a| a.name.is_some()).count();
        let mut arguments: Vec<(Option<String>, JavaType)> =
            Vec::with_capacity(config.arguments.len());
        for (i, arg) in config.arguments.iter().enumerate() {
            let path = format!("arguments[{i}]");
            if named != 0 && arg.name.is_none() {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    "name every argument or none",
                ));
            }
            if let Some(n) = &arg.name {
                if arguments.iter().any(|(m, _)| m.as_ref() == Some(n)) {
                    return Err(ConfigError::new(
                        format!("{path}.name"),
                        format!("argument {n:?} is declared twice"),
                    ));
                }
            }
            arguments.push((arg.name.clone(), JavaType::parse(arg, &path, 0)?));
        }
        Ok(Self {
            protocol: config.protocol,
            service: config.service.trim().to_owned(),
            version: non_empty(&config.version),
            group: non_empty(&config.group),
            method: method.to_owned(),
            arguments,
            dialect: config.dialect,
        })
    }

    /// The request path the RPC upstream reads the target from: Bolt
    /// `/service:version[:group]/method`, Dubbo `/service/method`.
    pub fn path(&self) -> String {
        match self.protocol {
            TargetProtocol::Bolt => format!("/{}/{}", self.bolt_unique_name(), self.method),
            TargetProtocol::Dubbo => format!("/{}/{}", self.service, self.method),
        }
    }

    /// SOFARPC's unique name of the service: `service[:version[:group]]`.
    pub fn bolt_unique_name(&self) -> String {
        let mut s = self.service.clone();
        if self.version.is_some() || self.group.is_some() {
            s.push(':');
            s.push_str(self.version.as_deref().unwrap_or("1.0"));
        }
        if let Some(g) = &self.group {
            s.push(':');
            s.push_str(g);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: Vec<ArgumentConfig>) -> JsonToRpcConfig {
        JsonToRpcConfig {
            protocol: TargetProtocol::Dubbo,
            service: "org.example.Users".into(),
            version: Some("1.0.0".into()),
            group: None,
            method: "find".into(),
            arguments: args,
            dialect: Dialect::Final,
            max_body_bytes: None,
        }
    }

    #[test]
    fn descriptors_and_names() {
        let mut user = ArgumentConfig::new("org.example.User");
        user.fields = vec![ArgumentConfig::new("int").named("age")];
        let sig = Signature::from_config(&config(vec![
            ArgumentConfig::new("java.lang.String"),
            ArgumentConfig::new("int"),
            ArgumentConfig::new("java.lang.Long"),
            user,
        ]))
        .unwrap();
        let d: String = sig.arguments.iter().map(|(_, t)| t.descriptor()).collect();
        assert_eq!(d, "Ljava/lang/String;ILjava/lang/Long;Lorg/example/User;");
        assert_eq!(sig.path(), "/org.example.Users/find");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = Signature::from_config(&config(vec![
            ArgumentConfig::new("int"),
            ArgumentConfig::new("in t"),
        ]))
        .unwrap_err();
        assert_eq!(e.path, "arguments[1].type");
        let e = Signature::from_config(&config(vec![ArgumentConfig::new("org.example.User")]))
            .unwrap_err();
        assert_eq!(e.path, "arguments[0].fields");
        let e = Signature::from_config(&config(vec![
            ArgumentConfig::new("int").named("a"),
            ArgumentConfig::new("int"),
        ]))
        .unwrap_err();
        assert_eq!(e.path, "arguments[1].name");
        for bad in ["", "a/b", "a b", "a?b"] {
            let mut c = config(vec![]);
            c.method = bad.into();
            assert_eq!(Signature::from_config(&c).unwrap_err().path, "method");
        }
        let mut c = config(vec![]);
        c.group = Some("g#1".into());
        assert_eq!(Signature::from_config(&c).unwrap_err().path, "group");
    }

    #[test]
    fn bolt_unique_name() {
        let mut c = config(vec![]);
        c.protocol = TargetProtocol::Bolt;
        let sig = Signature::from_config(&c).unwrap();
        assert_eq!(sig.path(), "/org.example.Users:1.0.0/find");
    }
}
