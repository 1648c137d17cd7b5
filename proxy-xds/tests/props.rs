//! Whatever bytes a control plane sends, translation answers with a value or a
//! refusal, never a panic.

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
            route::v3::RouteConfiguration,
        },
        extensions::transport_sockets::tls::v3::Secret,
    },
    google::protobuf::Any,
};
use proptest::prelude::*;
use proxy_xds::resources::{self, CLUSTER_TYPE, ENDPOINT_TYPE};

proptest! {
    #[test]
    fn arbitrary_cluster_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..512)) {
        let any = Any { type_url: CLUSTER_TYPE.into(), value };
        if let Ok(c) = resources::decode::<Cluster>(&any, CLUSTER_TYPE, "resources[0]") {
            let _ = resources::cluster(&c);
        }
    }

    #[test]
    fn arbitrary_assignment_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..512)) {
        let any = Any { type_url: ENDPOINT_TYPE.into(), value };
        if let Ok(c) = resources::decode::<ClusterLoadAssignment>(&any, ENDPOINT_TYPE, "resources[0]") {
            let _ = resources::load_assignment(&c);
        }
    }

    #[test]
    fn refusals_always_name_the_resource(name in "[a-z]{1,8}", tag in 1u32..63) {
        // A cluster with one arbitrary length-delimited field set: either taken or
        // refused with the cluster's name.
        let mut bytes = vec![0x0a, name.len() as u8];
        bytes.extend_from_slice(name.as_bytes());
        let key = (tag << 3) | 2;
        let mut k = key;
        loop {
            let b = (k & 0x7f) as u8;
            k >>= 7;
            if k == 0 { bytes.push(b); break; }
            bytes.push(b | 0x80);
        }
        bytes.push(0);
        let any = Any { type_url: CLUSTER_TYPE.into(), value: bytes };
        if let Ok(c) = resources::decode::<Cluster>(&any, CLUSTER_TYPE, "resources[0]") {
            if let Err(r) = resources::cluster(&c) {
                prop_assert!(r.resource.contains(&name) || c.name != name, "{r}");
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_listener_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..512)) {
        let any = Any { type_url: resources::LISTENER_TYPE.into(), value };
        if let Ok(l) = resources::decode::<Listener>(&any, resources::LISTENER_TYPE, "resources[0]") {
            let _ = resources::listener(&l);
        }
    }

    #[test]
    fn arbitrary_route_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..512)) {
        let any = Any { type_url: resources::ROUTE_TYPE.into(), value };
        if let Ok(rc) = resources::decode::<RouteConfiguration>(&any, resources::ROUTE_TYPE, "resources[0]") {
            let _ = resources::route_configuration(&rc);
        }
    }

    #[test]
    fn arbitrary_secret_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..512)) {
        let any = Any { type_url: resources::SECRET_TYPE.into(), value };
        if let Ok(s) = resources::decode::<Secret>(&any, resources::SECRET_TYPE, "resources[0]") {
            if let Err(r) = resources::secret(&s) {
                prop_assert!(r.resource.starts_with("secret "), "{r}");
            }
        }
    }
}
