#!/usr/bin/env python3
"""An independent xDS control plane for proxy-xds's integration tests.

An ADS server (envoy.service.discovery.v3.AggregatedDiscoveryService) on grpcio,
with the Envoy protos of the `xds-protos` package: it serves both state of the world
(StreamAggregatedResources) and delta (DeltaAggregatedResources) from one snapshot
of clusters (CDS), endpoints (EDS), listeners (LDS), route configurations (RDS) and
TLS certificates (SDS).

The test drives it with one JSON command per line on stdin:

  {"op": "set", "version": "2",
   "clusters": [{"name": "a"}, {"name": "b", "outlier_detection": true},
                {"name": "c", "fields": {"health_checks": [...]}}],
   "endpoints": {"a": ["127.0.0.1:8001"]},
   "listeners": [{"name": "web", "address": "127.0.0.1:9000", "rds": "web-routes",
                  "http_filters": [{"name": "lua", "typed_config": {"@type": ...}}]}],
   "routes": {"web-routes": [{"prefix": "/", "cluster": "a"},
                             {"prefix": "/", "weighted": [["a", 50], ["b", 50]]},
                             {"regex": "/x[0-9]+", "cluster": "a"}]},
   "secrets": {"web": {"cert": "<PEM chain>", "key": "<PEM key>"}}}
      replaces the snapshot and pushes what changed on every open stream (a
      cluster's "fields" are more Cluster fields in protobuf's JSON mapping,
      merged in, and so are a route's, e.g. "typed_per_filter_config"; a
      listener's "http_filters" are HttpFilter messages in that mapping, before
      the router);
  {"op": "restart"}   ends every stream, stops the server and serves again on the
                      same port (a control plane restarted mid-run);
  {"op": "quit"}

and reads one JSON event per line on stdout:

  {"event": "listening", "port": N}     once, then after each restart
  {"event": "set", "version"}           a snapshot taken, before what it sends
  {"event": "pushed", "version"}        after the responses it sent to open streams
  {"event": "stream", "variant": "sotw" | "delta"}
  {"event": "request", "variant", "type": "cds" | "eds" | "lds" | "rds" | "sds", "node",
   "nonce", "version_info", "names", "subscribe", "unsubscribe", "initial_versions",
   "error", "kind": "request" | "ack" | "nack"}
  {"event": "sent", "variant", "type", "nonce", "version", "names", "removed"}

Everything about the protocol here is written from the xDS specification, not from
the Rust client: the test checks the client against it.

Standalone, `--snapshot FILE` serves the snapshot in FILE (the JSON of a "set"
command, without "op") from the start, serves on when stdin ends (a process in the
background), and reads FILE again on SIGHUP, pushing what changed:

  ads_server.py --port 18000 --snapshot snapshot.json < /dev/null
"""

import argparse
import hashlib
import json
import queue
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2

# The HTTP filter configs a listener's "http_filters" may name by "@type": imported
# so that protobuf's JSON mapping knows them.
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as _jwt_authn  # noqa: F401
from envoy.extensions.filters.http.local_ratelimit.v3 import (  # noqa: F401
    local_rate_limit_pb2 as _local_ratelimit,
)
from envoy.extensions.filters.http.lua.v3 import lua_pb2 as _lua  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as _rbac  # noqa: F401
from xds.type.v3 import typed_struct_pb2 as _typed_struct  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

PREFIX = "type.googleapis.com/"
TYPES = {
    "cds": PREFIX + "envoy.config.cluster.v3.Cluster",
    "eds": PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment",
    "lds": PREFIX + "envoy.config.listener.v3.Listener",
    "rds": PREFIX + "envoy.config.route.v3.RouteConfiguration",
    "sds": PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret",
}
SHORT = {url: short for short, url in TYPES.items()}
ORDER = ["cds", "eds", "lds", "rds", "sds"]
WILDCARD = {"cds", "lds"}
V3 = 2  # envoy.config.core.v3.ApiVersion.V3

OUT_LOCK = threading.Lock()


def emit(**event):
    with OUT_LOCK:
        sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        sys.stdout.flush()


# === resources ===


def socket_address(msg, address):
    host, port = address.rsplit(":", 1)
    msg.address = host
    msg.port_value = int(port)


def make_cluster(spec):
    c = cluster_pb2.Cluster(name=spec["name"], type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = 1
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = V3
    if spec.get("outlier_detection"):
        c.outlier_detection.consecutive_5xx.value = 5
    if "fields" in spec:
        json_format.ParseDict(spec["fields"], c)
    return c


def make_assignment(name, addresses):
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    locality = cla.endpoints.add()
    for address in addresses:
        lb = locality.lb_endpoints.add()
        socket_address(lb.endpoint.address.socket_address, address)
    return cla


def make_listener(spec):
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=spec["name"])
    hcm.rds.route_config_name = spec["rds"]
    hcm.rds.config_source.ads.SetInParent()
    hcm.rds.config_source.resource_api_version = V3
    for spec_filter in spec.get("http_filters", []):
        json_format.ParseDict(spec_filter, hcm.http_filters.add())
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name=spec["name"])
    socket_address(listener.address.socket_address, spec["address"])
    chain = listener.filter_chains.add()
    network = chain.filters.add(name="envoy.filters.network.http_connection_manager")
    network.typed_config.Pack(hcm)
    return listener


def make_routes(name, routes):
    rc = route_pb2.RouteConfiguration(name=name)
    vhost = rc.virtual_hosts.add(name=name + "-all", domains=["*"])
    for spec in routes:
        route = vhost.routes.add()
        if "regex" in spec:
            route.match.safe_regex.regex = spec["regex"]
        else:
            route.match.prefix = spec.get("prefix", "/")
        if "weighted" in spec:
            for cluster, weight in spec["weighted"]:
                cw = route.route.weighted_clusters.clusters.add(name=cluster)
                cw.weight.value = weight
        else:
            route.route.cluster = spec["cluster"]
        if "fields" in spec:
            json_format.ParseDict(spec["fields"], route)
    return rc


def make_secret(name, spec):
    secret = secret_pb2.Secret(name=name)
    secret.tls_certificate.certificate_chain.inline_string = spec["cert"]
    secret.tls_certificate.private_key.inline_string = spec["key"]
    return secret


class Snapshot:
    """The resources of one version, by type and name, packed as Any."""

    def __init__(self, command=None):
        command = command or {}
        self.version = str(command.get("version", ""))
        self.resources = {short: {} for short in ORDER}
        for spec in command.get("clusters", []):
            self.put("cds", spec["name"], make_cluster(spec))
        for name, addresses in command.get("endpoints", {}).items():
            self.put("eds", name, make_assignment(name, addresses))
        for spec in command.get("listeners", []):
            self.put("lds", spec["name"], make_listener(spec))
        for name, routes in command.get("routes", {}).items():
            self.put("rds", name, make_routes(name, routes))
        for name, spec in command.get("secrets", {}).items():
            self.put("sds", name, make_secret(name, spec))

    def put(self, short, name, message):
        data = message.SerializeToString(deterministic=True)
        version = hashlib.sha256(data).hexdigest()[:12]
        self.resources[short][name] = (version, TYPES[short], data)


# === streams ===


class Stream:
    """One open ADS stream: what the client asked for, what it holds, and the
    queue of responses to send."""

    def __init__(self, plane, variant):
        self.plane = plane
        self.variant = variant
        self.out = queue.Queue()
        self.nonce = 0
        self.subscribed = {}  # short -> set of names, or None for a wildcard
        self.has = {}  # delta: short -> {name: version} the client acknowledged
        self.pending = {}  # delta: nonce -> (short, {name: version}, [removed])
        self.sotw_sent = {}  # sotw: short -> (version, names) last sent

    def next_nonce(self):
        self.nonce += 1
        return "%s-%d" % (self.variant, self.nonce)

    def wanted(self, short, snapshot):
        names = self.subscribed.get(short)
        res = snapshot.resources[short]
        if names is None:
            return dict(res)
        return {n: res[n] for n in sorted(names) if n in res}

    # --- state of the world ---

    def on_sotw(self, req):
        short = SHORT.get(req.type_url)
        error = req.error_detail.message if req.HasField("error_detail") else None
        kind = "nack" if error else ("ack" if req.response_nonce else "request")
        emit(event="request", variant="sotw", type=short or req.type_url,
             node=req.node.id if req.HasField("node") else None,
             nonce=req.response_nonce, version_info=req.version_info,
             names=list(req.resource_names), subscribe=[], unsubscribe=[],
             initial_versions={}, error=error, kind=kind)
        if short is None or error:
            return
        names = None if short in WILDCARD and not req.resource_names else set(req.resource_names)
        changed = self.subscribed.get(short, "unset") != names
        self.subscribed[short] = names
        snapshot = self.plane.snapshot
        if changed or req.version_info != snapshot.version:
            if self.sotw_sent.get(short) != (snapshot.version, names) or changed:
                self.send_sotw(short, snapshot)

    def send_sotw(self, short, snapshot):
        if short not in self.subscribed:
            return
        names = self.subscribed[short]
        resources = self.wanted(short, snapshot)
        resp = discovery_pb2.DiscoveryResponse(
            version_info=snapshot.version, type_url=TYPES[short], nonce=self.next_nonce())
        for _, (_, type_url, data) in sorted(resources.items()):
            resp.resources.add(type_url=type_url, value=data)
        self.sotw_sent[short] = (snapshot.version, names)
        emit(event="sent", variant="sotw", type=short, nonce=resp.nonce,
             version=snapshot.version, names=sorted(resources), removed=[])
        self.out.put(resp)

    # --- delta ---

    def on_delta(self, req):
        short = SHORT.get(req.type_url)
        error = req.error_detail.message if req.HasField("error_detail") else None
        kind = "nack" if error else ("ack" if req.response_nonce else "request")
        emit(event="request", variant="delta", type=short or req.type_url,
             node=req.node.id if req.HasField("node") else None,
             nonce=req.response_nonce, version_info="",
             names=[], subscribe=list(req.resource_names_subscribe),
             unsubscribe=list(req.resource_names_unsubscribe),
             initial_versions=dict(req.initial_resource_versions), error=error, kind=kind)
        if short is None:
            return
        if req.response_nonce:
            sent = self.pending.pop(req.response_nonce, None)
            if sent and not error:
                _, updated, removed = sent
                has = self.has.setdefault(short, {})
                has.update(updated)
                for name in removed:
                    has.pop(name, None)
        first = short not in self.subscribed
        if first:
            self.has[short] = dict(req.initial_resource_versions)
            subscribe = set(req.resource_names_subscribe)
            wildcard = short in WILDCARD and (not subscribe or "*" in subscribe)
            self.subscribed[short] = None if wildcard else subscribe
        elif self.subscribed[short] is not None:
            self.subscribed[short] |= set(req.resource_names_subscribe)
            self.subscribed[short] -= set(req.resource_names_unsubscribe)
        for name in req.resource_names_unsubscribe:
            self.has.get(short, {}).pop(name, None)
        if first or req.resource_names_subscribe:
            self.send_delta(short, self.plane.snapshot)

    def send_delta(self, short, snapshot):
        if short not in self.subscribed:
            return
        has = self.has.setdefault(short, {})
        wanted = self.wanted(short, snapshot)
        updated = {n: r for n, r in wanted.items() if has.get(n) != r[0]}
        all_names = snapshot.resources[short]
        names = self.subscribed[short]
        removed = sorted(n for n in has if n not in all_names and (names is None or n in names))
        if not updated and not removed:
            return
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snapshot.version, type_url=TYPES[short],
            nonce=self.next_nonce(), removed_resources=removed)
        for name, (version, type_url, data) in sorted(updated.items()):
            r = resp.resources.add(name=name, version=version)
            r.resource.type_url = type_url
            r.resource.value = data
        self.pending[resp.nonce] = (short, {n: r[0] for n, r in updated.items()}, removed)
        emit(event="sent", variant="delta", type=short, nonce=resp.nonce,
             version=snapshot.version, names=sorted(updated), removed=removed)
        self.out.put(resp)

    def push(self, snapshot):
        for short in ORDER:
            if self.variant == "sotw":
                self.send_sotw(short, snapshot)
            else:
                self.send_delta(short, snapshot)


class ControlPlane(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self):
        self.lock = threading.Lock()
        self.snapshot = Snapshot()
        self.streams = []

    def serve(self, variant, request_iterator, context):
        stream = Stream(self, variant)
        with self.lock:
            self.streams.append(stream)
        emit(event="stream", variant=variant)
        handler = stream.on_sotw if variant == "sotw" else stream.on_delta

        def read():
            try:
                for req in request_iterator:
                    with self.lock:
                        handler(req)
            except Exception:  # the stream ended (cancelled, reset, server stopped)
                pass
            stream.out.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                resp = stream.out.get()
                if resp is None:
                    return
                yield resp
        finally:
            with self.lock:
                if stream in self.streams:
                    self.streams.remove(stream)

    def StreamAggregatedResources(self, request_iterator, context):
        return self.serve("sotw", request_iterator, context)

    def DeltaAggregatedResources(self, request_iterator, context):
        return self.serve("delta", request_iterator, context)

    def set(self, command):
        with self.lock:
            self.snapshot = Snapshot(command)
            emit(event="set", version=self.snapshot.version)
            for stream in self.streams:
                stream.push(self.snapshot)
            emit(event="pushed", version=self.snapshot.version)

    def end_streams(self):
        with self.lock:
            for stream in self.streams:
                stream.out.put(None)
            self.streams = []


def start(plane, port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(plane, server)
    bound = server.add_insecure_port("127.0.0.1:%d" % port)
    if bound == 0:
        raise SystemExit("cannot bind 127.0.0.1:%d" % port)
    server.start()
    emit(event="listening", port=bound)
    return server, bound


def load_snapshot(plane, path):
    """Serves the snapshot in the JSON file at `path` (a "set" command's fields)."""
    try:
        with open(path, encoding="utf-8") as f:
            command = json.load(f)
    except (OSError, ValueError) as e:
        emit(event="error", message="cannot load %s: %s" % (path, e))
        return
    plane.set(command)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--snapshot",
        help="serve this JSON snapshot from the start, read again on SIGHUP; "
        "serve on after stdin ends",
    )
    args = parser.parse_args(argv)
    plane = ControlPlane()
    if args.snapshot:
        load_snapshot(plane, args.snapshot)
        signal.signal(signal.SIGHUP, lambda *_: load_snapshot(plane, args.snapshot))
    server, port = start(plane, args.port)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        op = command.get("op")
        if op == "set":
            plane.set(command)
        elif op == "restart":
            plane.end_streams()
            server.stop(grace=None).wait()
            server, port = start(plane, port)
        elif op == "quit":
            break
        else:
            emit(event="error", message="unknown op %r" % op)
    else:
        if args.snapshot:
            try:
                server.wait_for_termination()
            except KeyboardInterrupt:
                pass
    plane.end_streams()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
