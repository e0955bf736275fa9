# shellcheck shell=bash
# Shared by scripts/test and scripts/bench (sourced): clean-ups at exit, and
# installing missing Debian packages.

_cleanups=()
on_exit() { _cleanups+=("$1"); }
_run_cleanups() {
  local i
  for ((i=${#_cleanups[@]}-1; i>=0; i--)); do eval "${_cleanups[$i]}" || true; done
}
trap _run_cleanups EXIT

# Installs Debian packages that are missing (root, or sudo without a password).
apt_need() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "${0##*/}: installing ${missing[*]}" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Where installed tools (venvs, node_modules) live, inside the build directory.
export TOK_TEST_TOOLS="$PWD/target/test-tools"
mkdir -p "$TOK_TEST_TOOLS"
