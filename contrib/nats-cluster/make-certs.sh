#!/usr/bin/env bash
# A private certificate authority and a certificate for each engine server, for the cluster
# recipe (README.md beside this): `make-certs.sh DIR SERVER...`, each SERVER a host name (or
# IP address) the others and the nodes reach it by. Writes DIR/ca.pem, DIR/ca-key.pem (keep it
# off the servers) and DIR/<server>.pem, DIR/<server>-key.pem. Each server's certificate serves
# both ways: to clients, and to the other servers on the routes (mutual TLS).
set -euo pipefail
dir="${1:?usage: make-certs.sh DIR SERVER...}"; shift
[ "$#" -gt 0 ] || { echo "name at least one server" >&2; exit 2; }
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj "/CN=aiobpf engine CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
fi
for server in "$@"; do
    if [[ "$server" =~ ^[0-9.]+$|: ]]; then san="IP:$server"; else san="DNS:$server"; fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$server" \
        -keyout "$dir/$server-key.pem" -out "$dir/$server.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -days 825 -out "$dir/$server.pem" \
        -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san") \
        2>/dev/null
    rm -f "$dir/$server.csr"
done
chmod 0644 "$dir/ca.pem"
