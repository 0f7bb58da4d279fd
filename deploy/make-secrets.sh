#!/usr/bin/env bash
# Make the folder of certificates and passwords that deploy/compose.yaml mounts, once, before
# the first `docker compose up`. Nothing it writes belongs in the repository.
#
#   deploy/make-secrets.sh [--node NAME]... [--postgres-host NAME] [--san SAN]... DIR
#
#   DIR               the folder to create; it must not exist yet (or be empty)
#   --node NAME       a Kafka node's host name, once per node, in node-id order
#                     (default: kafka-1 kafka-2 kafka-3, the compose service names)
#   --postgres-host   the PostgreSQL server's host name (default: postgres)
#   --san SAN         another subjectAltName of every server certificate, such as
#                     DNS:kafka.example or IP:10.0.0.5 (default: DNS:localhost and
#                     IP:127.0.0.1, so that the Docker host reaches the published ports)
#
# It writes, every file mode 0600 in folders mode 0700:
#
#   ca.pem                 the CA certificate: the clients' trust anchor
#                          (ISA_BROKER_KAFKA_SSL_CA_FILE, sslrootcert= in the database URL)
#   ca.key                 the CA's private key: move it offline once the certificates exist
#   kafka-N/node.pem       node N's private key (PKCS#8) then its certificate and the CA's:
#                          a Kafka PEM key store. Subject CN=broker,OU=node-N,O=isa-broker;
#                          SAN the node's name and the --san values; server and client
#                          authentication (the controller listener uses mutual TLS)
#   postgres/server.crt    the PostgreSQL server's certificate (SAN its name and --san values)
#   postgres/server.key    its private key
#   postgres/password      password of the database role isa_broker
#   scram/broker.password      SCRAM-SHA-512 password of the brokers' own user (super user)
#   scram/admin.password       SCRAM-SHA-512 password of the operators' user (super user)
#   scram/isa-broker.password  SCRAM-SHA-512 password of the product's user (ACLs only)
#   kafka-cluster-id       the KRaft cluster id (not secret; keep it for the life of the data)
#
# Keys are EC P-256, signatures SHA-256; the CA is valid for 10 years, the server
# certificates for 825 days. Passwords are 32 random bytes in hex (no character that needs
# quoting in a URL, a properties file or a JAAS line).
set -euo pipefail
umask 077

nodes=()
postgres_host=postgres
sans=()
dir=

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --node) [ $# -ge 2 ] || usage; nodes+=("$2"); shift 2 ;;
    --postgres-host) [ $# -ge 2 ] || usage; postgres_host=$2; shift 2 ;;
    --san) [ $# -ge 2 ] || usage; sans+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    -*) echo "make-secrets.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$dir" ] || usage; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || usage
[ ${#nodes[@]} -gt 0 ] || nodes=(kafka-1 kafka-2 kafka-3)
[ ${#sans[@]} -gt 0 ] || sans=(DNS:localhost IP:127.0.0.1)

command -v openssl >/dev/null || { echo "make-secrets.sh: openssl is needed" >&2; exit 1; }
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "make-secrets.sh: $dir exists and is not empty; refusing to replace secrets" >&2
  exit 1
fi
mkdir -p "$dir"
chmod 0700 "$dir"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

extra_sans=$(IFS=,; echo "${sans[*]}")

new_key() {  # an EC P-256 private key, PKCS#8 PEM
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

password() {  # 32 random bytes, hex, into file $1
  openssl rand -hex 32 > "$1"
}

# --- the CA -----------------------------------------------------------------------------------
new_key "$dir/ca.key"
cat > "$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = isa-broker
CN = isa-broker data tier CA
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
openssl req -new -x509 -sha256 -days 3650 -key "$dir/ca.key" -config "$work/ca.cnf" \
  -extensions ca -set_serial "0x$(openssl rand -hex 16)" -out "$dir/ca.pem"

# issue SUBJECT SAN EKU KEY CERT: a server certificate signed by the CA
issue() {
  local subject=$1 san=$2 eku=$3 key=$4 cert=$5
  cat > "$work/leaf.cnf" <<EOF
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl req -new -sha256 -key "$key" -subj "$subject" -out "$work/leaf.csr"
  openssl x509 -req -sha256 -days 825 -in "$work/leaf.csr" -CA "$dir/ca.pem" \
    -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "$work/leaf.cnf" -extensions leaf -out "$cert" 2>/dev/null
}

# --- Kafka nodes --------------------------------------------------------------------------------
id=0
for node in "${nodes[@]}"; do
  id=$((id + 1))
  mkdir -m 0700 "$dir/kafka-$id"
  new_key "$work/node.key"
  issue "/O=isa-broker/OU=node-$id/CN=broker" "DNS:$node,$extra_sans" \
    "serverAuth, clientAuth" "$work/node.key" "$work/node.crt"
  cat "$work/node.key" "$work/node.crt" "$dir/ca.pem" > "$dir/kafka-$id/node.pem"
  rm -f "$work/node.key"
done

# --- PostgreSQL -----------------------------------------------------------------------------------
mkdir -m 0700 "$dir/postgres"
new_key "$dir/postgres/server.key"
issue "/O=isa-broker/CN=$postgres_host" "DNS:$postgres_host,$extra_sans" "serverAuth" \
  "$dir/postgres/server.key" "$dir/postgres/server.crt"
password "$dir/postgres/password"

# --- SCRAM users and the cluster id ------------------------------------------------------------------
mkdir -m 0700 "$dir/scram"
for user in broker admin isa-broker; do
  password "$dir/scram/$user.password"
done
cluster_id=-
while [ "${cluster_id#-}" != "$cluster_id" ]; do  # as Kafka's Uuid.randomUuid: no leading '-'
  cluster_id=$(openssl rand 16 | openssl base64 -A | tr '+/' '-_' | tr -d '=')
done
echo "$cluster_id" > "$dir/kafka-cluster-id"

find "$dir" -type d -exec chmod 0700 {} +
find "$dir" -type f -exec chmod 0600 {} +

# --- check what was written ------------------------------------------------------------------------
id=0
for node in "${nodes[@]}"; do
  id=$((id + 1))
  openssl verify -CAfile "$dir/ca.pem" -purpose sslserver -verify_hostname "$node" \
    "$dir/kafka-$id/node.pem" >/dev/null
  openssl verify -CAfile "$dir/ca.pem" -purpose sslclient "$dir/kafka-$id/node.pem" >/dev/null
done
openssl verify -CAfile "$dir/ca.pem" -purpose sslserver -verify_hostname "$postgres_host" \
  "$dir/postgres/server.crt" >/dev/null

echo "wrote $dir: CA, ${#nodes[@]} Kafka node certificates, the PostgreSQL certificate,"
echo "SCRAM passwords for broker, admin and isa-broker, the database password and the cluster id."
echo "Move $dir/ca.key offline once you no longer need to issue certificates."
