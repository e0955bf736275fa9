# Sourced by scripts/test (and scripts/bench). A throwaway PostgreSQL from
# Debian's packages for the PostgreSQL store tests: a fresh cluster in a temp
# dir, listening on 127.0.0.1 only, on a free port, stopped and removed at exit.
# initdb refuses to run as root, so as root the cluster runs as the `postgres`
# user the package creates (or `nobody`). Password authentication (SCRAM), so
# the tests go through tok's password path. Exports for the tests:
#   TOK_TEST_PG_URL       postgres://tok@127.0.0.1:PORT/postgres (no password)
#   TOK_TEST_PGPASSWORD   the superuser's password, for PGPASSWORD
#   TOK_TEST_PG_BIN       the server's bin dir, for tests that start a cluster
#                         of their own (to stop it mid-load)
#   TOK_TEST_PG_RUNAS     the user to run those as ("" when not root)
#   TOK_TEST_PG_CA        a CA certificate (PEM) that signed the server's
#                         certificate (for 127.0.0.1 and localhost): TLS tests
#   TOK_TEST_PG_OTHER_CA  a CA that did not (verification must fail)
# Tests create a database per test (CREATE DATABASE) and drop it after.

_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$_pg_bin" ] || [ ! -x "$_pg_bin/initdb" ]; then
  apt_need postgresql
  _pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# The README's "More than one node" walk-through (tests/it/nodes.rs) uses both.
command -v jq >/dev/null || apt_need jq
command -v curl >/dev/null || apt_need curl

_pg_runas=""
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then _pg_runas=postgres; else _pg_runas=nobody; fi
fi
# Runs a command as the cluster's user.
_pg_as() {
  if [ -n "$_pg_runas" ]; then runuser -u "$_pg_runas" -- "$@"; else "$@"; fi
}

_pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/tok-pg.XXXXXX")
chmod 755 "$_pg_dir"
[ -z "$_pg_runas" ] || chown "$_pg_runas" "$_pg_dir"
_pg_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$_pg_password" >"$_pg_dir/pwfile"
chmod 600 "$_pg_dir/pwfile"
[ -z "$_pg_runas" ] || chown "$_pg_runas" "$_pg_dir/pwfile"
_pg_as "$_pg_bin/initdb" -D "$_pg_dir/data" -U tok --pwfile="$_pg_dir/pwfile" \
  --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$_pg_dir/initdb.log" 2>&1 || {
  cat "$_pg_dir/initdb.log" >&2; echo "50-postgres.sh: initdb failed" >&2; return 1; }
rm -f "$_pg_dir/pwfile"

# TLS: a throwaway CA and a server certificate for 127.0.0.1 and localhost.
command -v openssl >/dev/null || apt_need openssl
(
  cd "$_pg_dir" || exit 1
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=tok test $ca" -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
  chmod 600 server.key
) || { echo "50-postgres.sh: could not make test certificates" >&2; return 1; }
[ -z "$_pg_runas" ] || chown "$_pg_runas" "$_pg_dir/server.key" "$_pg_dir/server.pem"

# A free port: bind port 0 and read what the kernel gave (python3 is already
# needed by 40-vault-oauth.sh). Retried in case another process takes it first.
for _pg_try in 1 2 3 4 5; do
  _pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if _pg_as "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $_pg_port -k $_pg_dir -c max_connections=400 -c ssl=on -c ssl_cert_file=$_pg_dir/server.pem -c ssl_key_file=$_pg_dir/server.key" \
      >/dev/null 2>&1; then
    break
  fi
  _pg_port=""
done
if [ -z "$_pg_port" ]; then
  cat "$_pg_dir/server.log" >&2 || true
  echo "50-postgres.sh: PostgreSQL did not start" >&2
  return 1
fi
on_exit "_pg_as '$_pg_bin/pg_ctl' -D '$_pg_dir/data' -m immediate -w stop >/dev/null 2>&1; rm -rf '$_pg_dir'"

export TOK_TEST_PG_URL="postgres://tok@127.0.0.1:$_pg_port/postgres"
export TOK_TEST_PGPASSWORD="$_pg_password"
export TOK_TEST_PG_BIN="$_pg_bin"
export TOK_TEST_PG_RUNAS="$_pg_runas"
export TOK_TEST_PG_CA="$_pg_dir/ca.pem"
export TOK_TEST_PG_OTHER_CA="$_pg_dir/other-ca.pem"
unset _pg_try _pg_password
