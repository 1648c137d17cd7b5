#!/usr/bin/env bash
# Regenerates the TEST-ONLY certificates configs/mesh.yaml uses: a mesh root CA and two
# workload certificates (EC P-256, valid for 100 years) with SPIFFE ids as URI SANs.
#
#   ca.pem                  the mesh root (its key is thrown away after signing)
#   reviews.pem/.key        this sidecar's workload: serves the inbound listener and is
#                           the client certificate of the mTLS-originating cluster
#                           (spiffe://cluster.local/ns/default/sa/reviews)
#   productpage.pem/.key    a calling workload (spiffe://cluster.local/ns/default/sa/productpage)
#   stranger.pem/.key       a workload of another namespace
#                           (spiffe://cluster.local/ns/legacy/sa/batch), denied by rbac
#   sm2-ca.pem              a Guomi (SM2-with-SM3) mesh root, for RFC 8998 clients
#   sm2-reviews.pem/.key    this sidecar's SM2 certificate (same names as reviews.pem)
#   sm2-productpage.pem/.key  an SM2 client certificate (productpage's SPIFFE id)
#
# `./gen.sh sm2` makes only the SM2 files (OpenSSL 3 is needed for SM2).
#
# The private keys are committed on purpose: they protect nothing. Never use them
# outside tests and local experiments. Needs the openssl CLI (1.1.1 or 3.x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
days=36500

# sm2_material: the Guomi root and leaves, signed SM2-with-SM3 with the default
# SM2 identifier 1234567812345678.
sm2_material() {
  local id=distid:1234567812345678
  openssl genpkey -algorithm SM2 -out "$tmp/sm2-ca.key"
  openssl req -x509 -new -key "$tmp/sm2-ca.key" -sm3 -sigopt "$id" -days "$days" \
    -subj "/O=sidecar example/CN=mesh test SM2 root CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out sm2-ca.pem
  local name san
  for name in reviews productpage; do
    case "$name" in
      reviews) san="URI:spiffe://cluster.local/ns/default/sa/reviews,DNS:reviews.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1" ;;
      productpage) san="URI:spiffe://cluster.local/ns/default/sa/productpage,DNS:productpage.default.svc.cluster.local" ;;
    esac
    openssl genpkey -algorithm SM2 -out "sm2-$name.key"
    openssl req -new -key "sm2-$name.key" -sm3 -sigopt "$id" \
      -subj "/O=sidecar example/CN=$name" -out "$tmp/sm2-$name.csr"
    cat >"$tmp/sm2-$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT
    openssl x509 -req -in "$tmp/sm2-$name.csr" -CA sm2-ca.pem -CAkey "$tmp/sm2-ca.key" \
      -CAcreateserial -CAserial "$tmp/sm2-ca.srl" -sm3 -sigopt "$id" -vfyopt "$id" \
      -days "$days" -extfile "$tmp/sm2-$name.ext" -out "sm2-$name.pem"
  done
  echo "written: sm2-ca.pem sm2-reviews.{pem,key} sm2-productpage.{pem,key}"
}

if [ "${1:-}" = sm2 ]; then
  sm2_material
  exit 0
fi

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key.sec1"
openssl pkcs8 -topk8 -nocrypt -in "$tmp/ca.key.sec1" -out "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days "$days" \
  -subj "/O=sidecar example/CN=mesh test root CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

# leaf NAME SAN
leaf() {
  local name="$1" san="$2"
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$name.key.sec1"
  openssl pkcs8 -topk8 -nocrypt -in "$tmp/$name.key.sec1" -out "$name.key"
  openssl req -new -key "$name.key" -subj "/O=sidecar example/CN=$name" -out "$tmp/$name.csr"
  cat >"$tmp/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT
  openssl x509 -req -in "$tmp/$name.csr" -CA ca.pem -CAkey "$tmp/ca.key" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -sha256 -days "$days" -extfile "$tmp/$name.ext" -out "$name.pem"
}

leaf reviews "URI:spiffe://cluster.local/ns/default/sa/reviews,DNS:reviews.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
leaf productpage "URI:spiffe://cluster.local/ns/default/sa/productpage,DNS:productpage.default.svc.cluster.local"
leaf stranger "URI:spiffe://cluster.local/ns/legacy/sa/batch,DNS:batch.legacy.svc.cluster.local"
echo "written: ca.pem reviews.{pem,key} productpage.{pem,key} stranger.{pem,key}"
sm2_material
