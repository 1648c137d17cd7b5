#!/usr/bin/env python3
"""A Tongsuo (BabaSSL) TLS 1.3 peer speaking RFC 8998 only, for proxy-tls's
Guomi interop test (proxy-tls/tests/guomi_interop.rs).

Tongsuo's libssl and libcrypto come from the `tongsuopy` wheel (one shared
object, tongsuopy/backends/_tongsuo*.so, exporting the OpenSSL 1.1.1 API plus
Tongsuo's additions). It is loaded with ctypes and RTLD_LOCAL so that its
symbols never mix with the system OpenSSL that Python's own ssl module uses.

The context is restricted to TLS 1.3, the cipher suite TLS_SM4_GCM_SM3
(--ciphersuites to change), the group curveSM2 and the signature scheme sm2sig_sm3, with Tongsuo's strict
SM TLS 1.3 mode on.

  tongsuo_peer.py server --cert C --key K [--ca CA --verify-client] --reply R
      prints "PORT <n>", accepts one connection, reads one message, writes R
  tongsuo_peer.py client --port P --ca CA [--cert C --key K] --send S
      connects to 127.0.0.1:P with SNI and host check "localhost", writes S,
      reads one message (or, with --http-get PATH, sends an HTTP/1.1 GET and
      prints "HTTP_STATUS <status line>" and "HTTP_BODY <body>")

Both print "CIPHER <name>", "VERSION <v>", "PEER_SIGNATURE_DIGEST <sn>", "PEER_SIGNATURE_TYPE <sn>",
"PEER_CERT <subject>" when there is one, and "RECEIVED <text>", then "DONE".
Errors print "ERROR ..." with Tongsuo's error queue and exit non-zero.
"""

import argparse
import ctypes
import glob
import os
import signal
import socket
import sys

SSL_FILETYPE_PEM = 1
SSL_VERIFY_PEER = 0x01
SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
SSL_CTRL_SET_MIN_PROTO_VERSION = 123
SSL_CTRL_SET_MAX_PROTO_VERSION = 124
SSL_CTRL_SET_GROUPS_LIST = 92
SSL_CTRL_SET_SIGALGS_LIST = 98
SSL_CTRL_SET_CLIENT_SIGALGS_LIST = 102
SSL_CTRL_SET_TLSEXT_HOSTNAME = 55
SSL_CTRL_GET_PEER_SIGNATURE_NID = 108
TLSEXT_NAMETYPE_host_name = 0
TLS1_3_VERSION = 0x0304


def find_library():
    import tongsuopy  # noqa: F401  (the wheel; only its location is used)

    base = os.path.dirname(tongsuopy.__file__)
    candidates = sorted(glob.glob(os.path.join(base, "**", "_tongsuo*.so"), recursive=True))
    candidates += sorted(glob.glob(os.path.join(base, "**", "libssl*.so*"), recursive=True))
    if not candidates:
        raise SystemExit("ERROR no Tongsuo shared object inside " + base)
    return candidates[0]


def load():
    path = find_library()
    lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
    vp, cp, ci, cl = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_long
    sigs = {
        "OpenSSL_version": ([ci], cp),
        "TLS_server_method": ([], vp),
        "TLS_client_method": ([], vp),
        "SSL_CTX_new": ([vp], vp),
        "SSL_CTX_free": ([vp], None),
        "SSL_CTX_ctrl": ([vp, ci, cl, vp], cl),
        "SSL_CTX_set_ciphersuites": ([vp, cp], ci),
        "SSL_CTX_enable_sm_tls13_strict": ([vp], None),
        "SSL_CTX_use_certificate_chain_file": ([vp, cp], ci),
        "SSL_CTX_use_PrivateKey_file": ([vp, cp, ci], ci),
        "SSL_CTX_check_private_key": ([vp], ci),
        "SSL_CTX_load_verify_locations": ([vp, cp, cp], ci),
        "SSL_CTX_set_verify": ([vp, ci, vp], None),
        "SSL_new": ([vp], vp),
        "SSL_free": ([vp], None),
        "SSL_set_fd": ([vp, ci], ci),
        "SSL_ctrl": ([vp, ci, cl, vp], cl),
        "SSL_set1_host": ([vp, cp], ci),
        "SSL_accept": ([vp], ci),
        "SSL_connect": ([vp], ci),
        "SSL_read": ([vp, vp, ci], ci),
        "SSL_write": ([vp, cp, ci], ci),
        "SSL_shutdown": ([vp], ci),
        "SSL_get_error": ([vp, ci], ci),
        "SSL_get_version": ([vp], cp),
        "SSL_get_current_cipher": ([vp], vp),
        "SSL_CIPHER_get_name": ([vp], cp),
        "SSL_get_peer_certificate": ([vp], vp),
        "SSL_get_verify_result": ([vp], cl),
        "SSL_get_peer_signature_type_nid": ([vp, ctypes.POINTER(ci)], ci),
        "OBJ_nid2sn": ([ci], cp),
        "X509_get_subject_name": ([vp], vp),
        "X509_NAME_oneline": ([vp, cp, ci], cp),
        "X509_free": ([vp], None),
        "ERR_get_error": ([], ctypes.c_ulong),
        "ERR_error_string_n": ([ctypes.c_ulong, cp, ctypes.c_size_t], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib, path


def errors(lib):
    out = []
    buf = ctypes.create_string_buffer(256)
    while True:
        code = lib.ERR_get_error()
        if code == 0:
            return "; ".join(out) or "(empty error queue)"
        lib.ERR_error_string_n(code, buf, len(buf))
        out.append(buf.value.decode(errors="replace"))


def fail(lib, what):
    print("ERROR " + what + ": " + errors(lib), flush=True)
    sys.exit(1)


def make_ctx(lib, server, args):
    method = lib.TLS_server_method() if server else lib.TLS_client_method()
    ctx = lib.SSL_CTX_new(method)
    if not ctx:
        fail(lib, "SSL_CTX_new")
    if lib.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_3_VERSION, None) != 1:
        fail(lib, "min version")
    if lib.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_3_VERSION, None) != 1:
        fail(lib, "max version")
    lib.SSL_CTX_enable_sm_tls13_strict(ctx)
    if lib.SSL_CTX_set_ciphersuites(ctx, args.ciphersuites.encode()) != 1:
        fail(lib, "set_ciphersuites " + args.ciphersuites)
    groups = ctypes.c_char_p(b"SM2")
    if lib.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.cast(groups, ctypes.c_void_p)) != 1:
        fail(lib, "groups SM2")
    sigalgs = ctypes.c_char_p(b"sm2sig_sm3")
    if lib.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SIGALGS_LIST, 0, ctypes.cast(sigalgs, ctypes.c_void_p)) != 1:
        fail(lib, "sigalgs sm2sig_sm3")
    if lib.SSL_CTX_ctrl(
        ctx, SSL_CTRL_SET_CLIENT_SIGALGS_LIST, 0, ctypes.cast(sigalgs, ctypes.c_void_p)
    ) != 1:
        fail(lib, "client sigalgs sm2sig_sm3")
    if args.cert:
        if lib.SSL_CTX_use_certificate_chain_file(ctx, args.cert.encode()) != 1:
            fail(lib, "certificate " + args.cert)
        if lib.SSL_CTX_use_PrivateKey_file(ctx, args.key.encode(), SSL_FILETYPE_PEM) != 1:
            fail(lib, "key " + args.key)
        if lib.SSL_CTX_check_private_key(ctx) != 1:
            fail(lib, "key does not match certificate")
    if args.ca:
        if lib.SSL_CTX_load_verify_locations(ctx, args.ca.encode(), None) != 1:
            fail(lib, "CA file " + args.ca)
    mode = 0
    if not server or args.verify_client:
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
    lib.SSL_CTX_set_verify(ctx, mode, None)
    return ctx


def report(lib, ssl):
    print("VERSION " + lib.SSL_get_version(ssl).decode(), flush=True)
    cipher = lib.SSL_get_current_cipher(ssl)
    print("CIPHER " + (lib.SSL_CIPHER_get_name(cipher).decode() if cipher else "none"), flush=True)
    nid = ctypes.c_int(0)
    lib.SSL_ctrl(ssl, SSL_CTRL_GET_PEER_SIGNATURE_NID, 0, ctypes.cast(ctypes.byref(nid), ctypes.c_void_p))
    print("PEER_SIGNATURE_DIGEST %s" % lib.OBJ_nid2sn(nid.value).decode(), flush=True)
    kind = ctypes.c_int(0)
    if lib.SSL_get_peer_signature_type_nid(ssl, ctypes.byref(kind)) == 1:
        print("PEER_SIGNATURE_TYPE %s" % lib.OBJ_nid2sn(kind.value).decode(), flush=True)
    peer = lib.SSL_get_peer_certificate(ssl)
    if peer:
        buf = ctypes.create_string_buffer(512)
        name = lib.X509_NAME_oneline(lib.X509_get_subject_name(peer), buf, len(buf))
        print("PEER_CERT " + name.decode(errors="replace"), flush=True)
        print("VERIFY_RESULT %d" % lib.SSL_get_verify_result(ssl), flush=True)
        lib.X509_free(peer)


def exchange(lib, ssl, outgoing, read_first):
    buf = ctypes.create_string_buffer(4096)

    def read():
        n = lib.SSL_read(ssl, buf, len(buf))
        if n <= 0:
            fail(lib, "SSL_read (error %d)" % lib.SSL_get_error(ssl, n))
        text = buf.raw[:n].decode(errors="replace")
        print("RECEIVED " + text, flush=True)

    def write():
        data = outgoing.encode()
        if lib.SSL_write(ssl, data, len(data)) != len(data):
            fail(lib, "SSL_write")

    if read_first:
        read()
        write()
    else:
        write()
        read()


def http_get(lib, ssl, path):
    request = ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode()
    if lib.SSL_write(ssl, request, len(request)) != len(request):
        fail(lib, "SSL_write")
    buf = ctypes.create_string_buffer(16384)
    response = b""
    while True:
        n = lib.SSL_read(ssl, buf, len(buf))
        if n <= 0:
            break
        response += buf.raw[:n]
    if not response:
        fail(lib, "no HTTP response (SSL_read error %d)" % lib.SSL_get_error(ssl, n))
    head, _, body = response.partition(b"\r\n\r\n")
    print("HTTP_STATUS " + head.split(b"\r\n")[0].decode(errors="replace"), flush=True)
    print("HTTP_BODY " + body.decode(errors="replace").replace("\r\n", " | "), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--ca")
    parser.add_argument("--port", type=int)
    parser.add_argument("--verify-client", action="store_true")
    parser.add_argument("--send", default="ping from tongsuo")
    parser.add_argument("--reply", default="pong from tongsuo")
    parser.add_argument("--http-get", metavar="PATH",
                        help="client: send GET PATH (HTTP/1.1, Connection: close) and read "
                             "the whole response instead of --send")
    parser.add_argument("--ciphersuites", default="TLS_SM4_GCM_SM3",
                        help="TLS 1.3 suites to offer, OpenSSL syntax")
    parser.add_argument("--timeout", type=int, default=30)
    args = parser.parse_args()

    # Never outlive the test that started us.
    signal.alarm(args.timeout)

    lib, path = load()
    print("LIBRARY %s (%s)" % (path, lib.OpenSSL_version(0).decode()), flush=True)
    server = args.role == "server"
    ctx = make_ctx(lib, server, args)

    if server:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        print("PORT %d" % listener.getsockname()[1], flush=True)
        sock, _ = listener.accept()
    else:
        sock = socket.create_connection(("127.0.0.1", args.port))
    sock.setblocking(True)

    ssl = lib.SSL_new(ctx)
    lib.SSL_set_fd(ssl, sock.fileno())
    if server:
        if lib.SSL_accept(ssl) != 1:
            fail(lib, "SSL_accept")
    else:
        lib.SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     ctypes.cast(ctypes.c_char_p(b"localhost"), ctypes.c_void_p))
        lib.SSL_set1_host(ssl, b"localhost")
        if lib.SSL_connect(ssl) != 1:
            fail(lib, "SSL_connect")
    report(lib, ssl)
    if not server and args.http_get:
        http_get(lib, ssl, args.http_get)
    else:
        exchange(lib, ssl, args.reply if server else args.send, read_first=server)
    lib.SSL_shutdown(ssl)
    lib.SSL_free(ssl)
    sock.close()
    lib.SSL_CTX_free(ctx)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
