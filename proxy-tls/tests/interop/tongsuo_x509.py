#!/usr/bin/env python3
"""An SM2 certificate chain made by Tongsuo's libcrypto (the `tongsuopy`
wheel's shared object, loaded with ctypes and RTLD_LOCAL), for proxy-tls's
Guomi interop test: our verifiers must accept what another implementation
writes.

  tongsuo_x509.py OUTDIR
      writes OUTDIR/ca.pem (self-signed root, CA:TRUE, keyCertSign),
      OUTDIR/leaf.pem (CN/SAN localhost, serverAuth, signed by the root) and
      OUTDIR/leaf.key (PKCS#8), all SM2 with SM3 and the default SM2
      identifier, then prints "OK".
"""

import ctypes
import os
import sys

from tongsuopy.crypto import serialization
from tongsuopy.crypto.asymciphers import ec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tongsuo_peer import find_library  # noqa: E402

MBSTRING_ASC = 0x1001
NID_subject_alt_name = 85
NID_basic_constraints = 87
NID_key_usage = 83
NID_ext_key_usage = 126
EVP_PKEY_SM2 = 1172
EVP_PKEY_CTRL_SET1_ID = 0x1000 + 11
DEFAULT_ID = b"1234567812345678"


def load():
    lib = ctypes.CDLL(find_library(), mode=os.RTLD_LOCAL)
    vp, cp, ci, cl = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_long
    sigs = {
        "BIO_new_mem_buf": ([cp, ci], vp),
        "BIO_free": ([vp], ci),
        "PEM_read_bio_PrivateKey": ([vp, vp, vp, vp], vp),
        "EVP_PKEY_set_alias_type": ([vp, ci], ci),
        "X509_new": ([], vp),
        "X509_set_version": ([vp, cl], ci),
        "X509_get_serialNumber": ([vp], vp),
        "ASN1_INTEGER_set": ([vp, cl], ci),
        "X509_getm_notBefore": ([vp], vp),
        "X509_getm_notAfter": ([vp], vp),
        "X509_gmtime_adj": ([vp, cl], vp),
        "X509_set_pubkey": ([vp, vp], ci),
        "X509_get_subject_name": ([vp], vp),
        "X509_set_issuer_name": ([vp, vp], ci),
        "X509_NAME_add_entry_by_txt": ([vp, cp, ci, cp, ci, ci, ci], ci),
        "X509V3_EXT_conf_nid": ([vp, vp, ci, cp], vp),
        "X509_add_ext": ([vp, vp, ci], ci),
        "X509_EXTENSION_free": ([vp], None),
        "EVP_MD_CTX_new": ([], vp),
        "EVP_MD_CTX_free": ([vp], None),
        "EVP_PKEY_CTX_new": ([vp, vp], vp),
        "EVP_PKEY_CTX_ctrl": ([vp, ci, ci, ci, ci, vp], ci),
        "EVP_MD_CTX_set_pkey_ctx": ([vp, vp], None),
        "EVP_DigestSignInit": ([vp, vp, vp, vp, vp], ci),
        "EVP_sm3": ([], vp),
        "X509_sign_ctx": ([vp, vp], ci),
        "i2d_X509": ([vp, ctypes.POINTER(ctypes.c_char_p)], ci),
        "ERR_get_error": ([], ctypes.c_ulong),
        "ERR_error_string_n": ([ctypes.c_ulong, cp, ctypes.c_size_t], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib


def check(lib, ok, what):
    if not ok:
        buf = ctypes.create_string_buffer(256)
        code = lib.ERR_get_error()
        lib.ERR_error_string_n(code, buf, len(buf))
        raise SystemExit("ERROR %s: %s" % (what, buf.value.decode(errors="replace")))


def new_key(lib):
    """An SM2 key from tongsuopy, as PKCS#8 PEM and as a libcrypto EVP_PKEY."""
    key = ec.generate_private_key(ec.SM2())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bio = lib.BIO_new_mem_buf(pem, len(pem))
    pkey = lib.PEM_read_bio_PrivateKey(bio, None, None, None)
    lib.BIO_free(bio)
    check(lib, pkey, "PEM_read_bio_PrivateKey")
    check(lib, lib.EVP_PKEY_set_alias_type(pkey, EVP_PKEY_SM2) == 1, "EVP_PKEY_set_alias_type")
    return pem, pkey


def add_ext(lib, cert, nid, value):
    ext = lib.X509V3_EXT_conf_nid(None, None, nid, value)
    check(lib, ext, "extension %d" % nid)
    check(lib, lib.X509_add_ext(cert, ext, -1) == 1, "X509_add_ext")
    lib.X509_EXTENSION_free(ext)


def make_cert(lib, serial, cn, pkey, issuer_name, issuer_key, exts):
    cert = lib.X509_new()
    check(lib, lib.X509_set_version(cert, 2) == 1, "version")
    lib.ASN1_INTEGER_set(lib.X509_get_serialNumber(cert), serial)
    lib.X509_gmtime_adj(lib.X509_getm_notBefore(cert), -3600)
    lib.X509_gmtime_adj(lib.X509_getm_notAfter(cert), 86400)
    check(lib, lib.X509_set_pubkey(cert, pkey) == 1, "set_pubkey")
    name = lib.X509_get_subject_name(cert)
    check(lib, lib.X509_NAME_add_entry_by_txt(name, b"O", MBSTRING_ASC, b"Tongsuo made", -1, -1, 0) == 1, "O")
    check(lib, lib.X509_NAME_add_entry_by_txt(name, b"CN", MBSTRING_ASC, cn, -1, -1, 0) == 1, "CN")
    check(lib, lib.X509_set_issuer_name(cert, issuer_name or name) == 1, "issuer")
    for nid, value in exts:
        add_ext(lib, cert, nid, value)

    md = lib.EVP_MD_CTX_new()
    pctx = lib.EVP_PKEY_CTX_new(issuer_key, None)
    check(lib, pctx, "EVP_PKEY_CTX_new")
    check(
        lib,
        lib.EVP_PKEY_CTX_ctrl(pctx, -1, -1, EVP_PKEY_CTRL_SET1_ID, len(DEFAULT_ID), ctypes.cast(ctypes.c_char_p(DEFAULT_ID), ctypes.c_void_p)) > 0,
        "set1_id",
    )
    lib.EVP_MD_CTX_set_pkey_ctx(md, pctx)
    check(lib, lib.EVP_DigestSignInit(md, None, lib.EVP_sm3(), None, issuer_key) == 1, "DigestSignInit")
    check(lib, lib.X509_sign_ctx(cert, md) > 0, "X509_sign_ctx")
    lib.EVP_MD_CTX_free(md)

    out = ctypes.c_char_p(None)
    n = lib.i2d_X509(cert, ctypes.byref(out))
    check(lib, n > 0, "i2d_X509")
    der = ctypes.string_at(out, n)
    return cert, der


def pem(der):
    import base64

    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    lib = load()
    _, ca_key = new_key(lib)
    ca, ca_der = make_cert(
        lib, 1, b"Tongsuo Root", ca_key, None, ca_key,
        [(NID_basic_constraints, b"critical,CA:TRUE"), (NID_key_usage, b"critical,keyCertSign,cRLSign")],
    )
    leaf_pem, leaf_key = new_key(lib)
    _, leaf_der = make_cert(
        lib, 2, b"localhost", leaf_key, lib.X509_get_subject_name(ca), ca_key,
        [
            (NID_basic_constraints, b"CA:FALSE"),
            (NID_key_usage, b"critical,digitalSignature"),
            (NID_ext_key_usage, b"serverAuth"),
            (NID_subject_alt_name, b"DNS:localhost"),
        ],
    )
    with open(os.path.join(out, "ca.pem"), "w") as f:
        f.write(pem(ca_der))
    with open(os.path.join(out, "leaf.pem"), "w") as f:
        f.write(pem(leaf_der))
    with open(os.path.join(out, "leaf.key"), "wb") as f:
        f.write(leaf_pem)
    print("OK")


if __name__ == "__main__":
    main()
