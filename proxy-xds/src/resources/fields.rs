//! Field numbers and names of the Envoy messages whose unhandled fields are refused:
//! a field left over after translation is named in the NACK.

/// A message's fields by number.
pub(crate) type Fields = &'static [(u32, &'static str)];

/// `Cluster` (envoy.config.cluster.v3).
pub(crate) const CLUSTER: Fields = &[
    (1, "name"),
    (2, "type"),
    (3, "eds_cluster_config"),
    (4, "connect_timeout"),
    (5, "per_connection_buffer_limit_bytes"),
    (6, "lb_policy"),
    (8, "health_checks"),
    (9, "max_requests_per_connection"),
    (10, "circuit_breakers"),
    (13, "http_protocol_options"),
    (14, "http2_protocol_options"),
    (16, "dns_refresh_rate"),
    (17, "dns_lookup_family"),
    (18, "dns_resolvers"),
    (19, "outlier_detection"),
    (20, "cleanup_interval"),
    (21, "upstream_bind_config"),
    (22, "lb_subset_config"),
    (23, "ring_hash_lb_config"),
    (24, "transport_socket"),
    (25, "metadata"),
    (26, "protocol_selection"),
    (27, "common_lb_config"),
    (28, "alt_stat_name"),
    (29, "common_http_protocol_options"),
    (30, "upstream_connection_options"),
    (31, "close_connections_on_host_health_failure"),
    (32, "ignore_health_on_host_removal"),
    (33, "load_assignment"),
    (34, "original_dst_lb_config"),
    (36, "typed_extension_protocol_options"),
    (37, "least_request_lb_config"),
    (38, "cluster_type"),
    (39, "respect_dns_ttl"),
    (40, "filters"),
    (41, "load_balancing_policy"),
    (42, "lrs_server"),
    (43, "transport_socket_matches"),
    (44, "dns_failure_refresh_rate"),
    (45, "use_tcp_for_dns_lookups"),
    (46, "upstream_http_protocol_options"),
    (47, "track_timeout_budgets"),
    (48, "upstream_config"),
    (49, "track_cluster_stats"),
    (50, "preconnect_policy"),
    (51, "connection_pool_per_downstream_connection"),
    (52, "maglev_lb_config"),
    (53, "dns_resolution_config"),
    (54, "wait_for_warm_on_init"),
    (55, "typed_dns_resolver_config"),
    (56, "round_robin_lb_config"),
    (57, "lrs_report_endpoint_metrics"),
    (58, "dns_jitter"),
    (59, "transport_socket_matcher"),
    (60, "per_connection_buffer_high_watermark_timeout"),
    (61, "stats_matcher"),
    (62, "queuing_policies"),
];
/// `ConfigSource` (envoy.config.core.v3).
pub(crate) const CONFIG_SOURCE: Fields = &[
    (1, "path"),
    (2, "api_config_source"),
    (3, "ads"),
    (4, "initial_fetch_timeout"),
    (5, "self"),
    (6, "resource_api_version"),
    (7, "authorities"),
    (8, "path_config_source"),
];
/// `Thresholds` (envoy.config.cluster.v3).
pub(crate) const THRESHOLDS: Fields = &[
    (2, "max_connections"),
    (3, "max_pending_requests"),
    (4, "max_requests"),
    (5, "max_retries"),
    (6, "track_remaining"),
    (7, "max_connection_pools"),
    (8, "retry_budget"),
];
/// `CommonLbConfig` (envoy.config.cluster.v3).
pub(crate) const COMMON_LB_CONFIG: Fields = &[
    (1, "healthy_panic_threshold"),
    (2, "zone_aware_lb_config"),
    (3, "locality_weighted_lb_config"),
    (4, "update_merge_window"),
    (5, "ignore_new_hosts_until_first_hc"),
    (6, "close_connections_on_host_set_change"),
    (7, "consistent_hashing_lb_config"),
    (8, "override_host_status"),
];
/// `RingHashLbConfig` (envoy.config.cluster.v3).
pub(crate) const RING_HASH_LB_CONFIG: Fields = &[
    (1, "minimum_ring_size"),
    (3, "hash_function"),
    (4, "maximum_ring_size"),
];
/// `LeastRequestLbConfig` (envoy.config.cluster.v3).
pub(crate) const LEAST_REQUEST_LB_CONFIG: Fields = &[
    (1, "choice_count"),
    (2, "active_request_bias"),
    (3, "slow_start_config"),
];
/// `RoundRobinLbConfig` (envoy.config.cluster.v3).
pub(crate) const ROUND_ROBIN_LB_CONFIG: Fields = &[(1, "slow_start_config")];
/// `MaglevLbConfig` (envoy.config.cluster.v3).
pub(crate) const MAGLEV_LB_CONFIG: Fields = &[(1, "table_size")];
/// `HttpProtocolOptions` (envoy.extensions.upstreams.http.v3).
pub(crate) const UPSTREAM_HTTP_OPTIONS: Fields = &[
    (1, "common_http_protocol_options"),
    (2, "upstream_http_protocol_options"),
    (3, "explicit_http_config"),
    (4, "use_downstream_protocol_config"),
    (5, "auto_config"),
    (6, "http_filters"),
    (7, "header_validation_config"),
    (8, "outlier_detection"),
    (9, "request_mirror_policies"),
    (10, "hash_policy"),
    (11, "retry_policy"),
];
/// `HttpProtocolOptions` (envoy.config.core.v3).
pub(crate) const COMMON_HTTP_OPTIONS: Fields = &[
    (1, "idle_timeout"),
    (2, "max_headers_count"),
    (3, "max_connection_duration"),
    (4, "max_stream_duration"),
    (6, "max_requests_per_connection"),
    (7, "max_response_headers_kb"),
    (8, "max_connection_duration_jitter"),
];
/// `Http2ProtocolOptions` (envoy.config.core.v3).
pub(crate) const HTTP2_OPTIONS: Fields = &[
    (1, "hpack_table_size"),
    (2, "max_concurrent_streams"),
    (3, "initial_stream_window_size"),
    (4, "initial_connection_window_size"),
    (5, "allow_connect"),
    (6, "allow_metadata"),
    (7, "max_outbound_frames"),
    (8, "max_outbound_control_frames"),
    (9, "max_consecutive_inbound_frames_with_empty_payload"),
    (10, "max_inbound_priority_frames_per_stream"),
    (11, "max_inbound_window_update_frames_per_data_frame_sent"),
    (12, "stream_error_on_invalid_http_messaging"),
    (13, "custom_settings_parameters"),
    (14, "override_stream_error_on_invalid_http_message"),
    (15, "connection_keepalive"),
    (16, "use_oghttp2_codec"),
    (17, "max_metadata_size"),
    (18, "enable_huffman_encoding"),
    (19, "max_header_field_size_kb"),
    (20, "disallow_obs_text"),
    (21, "stream_reset_burst"),
    (22, "stream_reset_rate"),
];
/// `Http1ProtocolOptions` (envoy.config.core.v3).
pub(crate) const HTTP1_OPTIONS: Fields = &[
    (1, "allow_absolute_url"),
    (2, "accept_http_10"),
    (3, "default_host_for_http_10"),
    (4, "header_key_format"),
    (5, "enable_trailers"),
    (6, "allow_chunked_length"),
    (7, "override_stream_error_on_invalid_http_message"),
    (8, "send_fully_qualified_url"),
    (9, "use_balsa_parser"),
    (10, "allow_custom_methods"),
    (11, "ignore_http_11_upgrade"),
];
/// `ClusterLoadAssignment` (envoy.config.endpoint.v3).
pub(crate) const LOAD_ASSIGNMENT: Fields = &[
    (1, "cluster_name"),
    (2, "endpoints"),
    (4, "policy"),
    (5, "named_endpoints"),
];
/// `Policy` (envoy.config.endpoint.v3).
pub(crate) const POLICY: Fields = &[
    (2, "drop_overloads"),
    (3, "overprovisioning_factor"),
    (4, "endpoint_stale_after"),
    (6, "weighted_priority_health"),
];
/// `LocalityLbEndpoints` (envoy.config.endpoint.v3).
pub(crate) const LOCALITY_ENDPOINTS: Fields = &[
    (1, "locality"),
    (2, "lb_endpoints"),
    (3, "load_balancing_weight"),
    (5, "priority"),
    (6, "proximity"),
    (7, "load_balancer_endpoints"),
    (8, "leds_cluster_locality_config"),
    (9, "metadata"),
];
/// `LbEndpoint` (envoy.config.endpoint.v3).
pub(crate) const LB_ENDPOINT: Fields = &[
    (1, "endpoint"),
    (2, "health_status"),
    (3, "metadata"),
    (4, "load_balancing_weight"),
    (5, "endpoint_name"),
];
/// `Endpoint` (envoy.config.endpoint.v3).
pub(crate) const ENDPOINT: Fields = &[
    (1, "address"),
    (2, "health_check_config"),
    (3, "hostname"),
    (4, "additional_addresses"),
    (5, "observability_name"),
];
/// `SocketAddress` (envoy.config.core.v3).
pub(crate) const SOCKET_ADDRESS: Fields = &[
    (1, "protocol"),
    (2, "address"),
    (3, "port_value"),
    (4, "named_port"),
    (5, "resolver_name"),
    (6, "ipv4_compat"),
    (7, "network_namespace_filepath"),
];
/// `Resource` (envoy.service.discovery.v3).
pub(crate) const RESOURCE: Fields = &[
    (1, "version"),
    (2, "resource"),
    (3, "name"),
    (4, "aliases"),
    (6, "ttl"),
    (7, "cache_control"),
    (8, "resource_name"),
    (9, "metadata"),
];
