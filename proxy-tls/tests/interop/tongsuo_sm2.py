#!/usr/bin/env python3
"""SM2 keys and signatures made by Tongsuo (through tongsuopy's
cryptography-style API), for proxy-tls's Guomi interop test.

  tongsuo_sm2.py make MESSAGE_HEX
      generates an SM2 key and prints one JSON object: the key as PKCS#8 PEM
      and as SEC1 ("EC PRIVATE KEY") PEM, the public point (uncompressed,
      hex), and Tongsuo's SM2-with-SM3 signature of MESSAGE (DER, hex)
  tongsuo_sm2.py verify POINT_HEX MESSAGE_HEX SIGNATURE_HEX
      prints "VALID" or "INVALID" for a signature made elsewhere
"""

import json
import sys

from tongsuopy.crypto import hashes, serialization
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.exceptions import InvalidSignature


def make(message):
    key = ec.generate_private_key(ec.SM2())
    none = serialization.NoEncryption()
    out = {
        "pkcs8": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, none
        ).decode(),
        "sec1": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, none
        ).decode(),
        "point": key.public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        .hex(),
        "signature": key.sign(message, ec.ECDSA(hashes.SM3())).hex(),
    }
    print(json.dumps(out))


def verify(point, message, signature):
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SM2(), point)
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SM3()))
        print("VALID")
    except InvalidSignature:
        print("INVALID")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(bytes.fromhex(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "verify":
        verify(*(bytes.fromhex(a) for a in sys.argv[2:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
