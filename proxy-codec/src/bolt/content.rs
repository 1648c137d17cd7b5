//! The routing fields SOFARPC puts inside a hessian2 `SofaRequest` content, for
//! clients (sofa-rpc-node with hessian2) that leave the method out of the header map.

use crate::hessian2::{HessianError, Reader};

/// The class name of SOFARPC's request object.
pub const SOFA_REQUEST: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";

/// The target service and method name read from a hessian2 `SofaRequest`.
pub(crate) fn service_and_method(
    content: &[u8],
) -> Result<(Option<String>, Option<String>), HessianError> {
    let mut service = None;
    let mut method = None;
    // hessian.js 1.x (sofa-bolt-node) writes the draft dialect, whose class
    // definitions start with `O`; Java SOFARPC the final one (`C`).
    let mut reader = if content.first() == Some(&b'O') {
        Reader::draft(content)
    } else {
        Reader::new(content)
    };
    reader.read_object(&mut |name, r| {
        let slot = match name {
            "targetServiceUniqueName" => &mut service,
            "methodName" => &mut method,
            _ => return Ok(false),
        };
        *slot = r.string_or_skip()?;
        Ok(true)
    })?;
    Ok((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hessian2::Writer;

    #[test]
    fn reads_a_sofa_request_object() {
        let mut w = Writer::new();
        w.class_def(
            SOFA_REQUEST,
            &[
                "targetAppName",
                "methodName",
                "targetServiceUniqueName",
                "requestProps",
                "methodArgSigs",
            ],
        );
        w.object(0);
        w.null();
        w.string("sayHello");
        w.string("com.example.Hello:1.0");
        w.map_begin().string("k").string("v").map_end();
        w.raw(&[0x71]).string("[string").string("java.lang.String");
        w.string("world");
        let b = w.into_bytes();
        let (s, m) = service_and_method(&b).unwrap();
        assert_eq!(s.as_deref(), Some("com.example.Hello:1.0"));
        assert_eq!(m.as_deref(), Some("sayHello"));
    }
}
