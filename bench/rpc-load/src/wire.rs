//! The frames the load generator sends and the echo server answers, built with
//! proxy-codec's own Bolt and Dubbo codecs.

use bytes::Bytes;
use proxy_codec::{
    bolt::{self, BoltFrame, BoltVersion},
    dubbo::{self, DubboFrame},
    hessian2::Writer,
    Bolt, Dubbo, Protocol,
};

/// The service every call names (the sidecar routes on it).
pub(crate) const SERVICE: &str = "com.example.EchoService";
/// The method every call names.
pub(crate) const METHOD: &str = "echo";

/// A protocol the benchmark speaks: a request of a given payload size, the fixed
/// answer, and whether an answer is a success.
pub(crate) trait Wire: Protocol + Copy {
    /// A request carrying `payload_bytes` of payload (its id set per call).
    fn request(&self, payload_bytes: usize) -> Self::Frame;
    /// The fixed answer (its id set per call).
    fn answer(&self) -> Self::Frame;
    /// Whether a response reports success.
    fn ok(&self, response: &Self::Frame) -> bool;
}

impl Wire for Bolt {
    fn request(&self, payload_bytes: usize) -> BoltFrame {
        BoltFrame {
            version: BoltVersion::V1,
            rpc_type: bolt::TYPE_REQUEST,
            cmd_code: bolt::CMD_REQUEST,
            ver2: 1,
            request_id: 0,
            codec: bolt::CODEC_HESSIAN2,
            timeout: 3000,
            status: 0,
            class_name: Bytes::from_static(bolt::SOFA_REQUEST.as_bytes()),
            header: Bolt::header_map([
                ("sofa_head_target_service", Some(SERVICE)),
                ("sofa_head_method_name", Some(METHOD)),
            ]),
            content: Bytes::from(vec![b'x'; payload_bytes]),
        }
    }

    fn answer(&self) -> BoltFrame {
        let mut value = Writer::new();
        value.string("pong");
        BoltFrame {
            rpc_type: bolt::TYPE_RESPONSE,
            cmd_code: bolt::CMD_RESPONSE,
            timeout: 0,
            status: bolt::status::SUCCESS,
            class_name: Bytes::from_static(bolt::SOFA_RESPONSE.as_bytes()),
            header: Bytes::new(),
            content: Bytes::from(value.into_bytes()),
            ..self.request(0)
        }
    }

    fn ok(&self, response: &BoltFrame) -> bool {
        response.status == bolt::status::SUCCESS
    }
}

impl Wire for Dubbo {
    fn request(&self, payload_bytes: usize) -> DubboFrame {
        let mut w = Writer::new();
        w.string("2.0.2")
            .string(SERVICE)
            .string("1.0.0")
            .string(METHOD);
        w.string("Ljava/lang/String;")
            .string(&"x".repeat(payload_bytes));
        w.string_map([("path", SERVICE), ("timeout", "3000")]);
        DubboFrame {
            flags: dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2,
            status: 0,
            request_id: 0,
            body: Bytes::from(w.into_bytes()),
        }
    }

    fn answer(&self) -> DubboFrame {
        let mut w = Writer::new();
        w.int(dubbo::RESPONSE_VALUE).string("pong");
        DubboFrame {
            flags: dubbo::HESSIAN2,
            status: dubbo::status::OK,
            request_id: 0,
            body: Bytes::from(w.into_bytes()),
        }
    }

    fn ok(&self, response: &DubboFrame) -> bool {
        response.status == dubbo::status::OK
    }
}
