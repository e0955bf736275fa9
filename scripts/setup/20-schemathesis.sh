# shellcheck shell=bash
# Schemathesis (PyPI) checks docs/openapi.yaml against a running `tok serve`
# (tests/it/openapi.rs). Installed once into a venv under $TOK_TEST_TOOLS.
# Exports TOK_SCHEMATHESIS: the path of its `st` command.
SCHEMATHESIS_VERSION="4.32.5"
_st_venv="$TOK_TEST_TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$_st_venv/bin/st" ]; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_need python3 python3-venv
  fi
  echo "scripts/test: installing schemathesis $SCHEMATHESIS_VERSION into $_st_venv" >&2
  rm -rf "$_st_venv"
  python3 -m venv "$_st_venv"
  "$_st_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export TOK_SCHEMATHESIS="$_st_venv/bin/st"
unset _st_venv
