# Sourced by scripts/test. A real Secret Service for the keyring tests: private
# D-Bus session buses, each with gnome-keyring's secrets component unlocked by a
# throwaway password, in fresh temp dirs. Exports for the tests:
#   TOK_TEST_DBUS         bus address of the keyring most tests share
#   TOK_TEST_DBUS_LOCKED  bus address of a second keyring, which the locked-keyring
#                         test locks (so that no other test sees it locked)
#   TOK_TEST_DBUS_HUNG    bus address of a third keyring, stopped with SIGSTOP: it
#                         owns its bus name but never answers, like a hung keyring
# The daemons are stopped by pid when scripts/test exits.

apt_need dbus-daemon dbus-bin dbus-x11 gnome-keyring libsecret-tools

# Starts a bus and a keyring; exports the bus address as variable $1.
# (Not in a command substitution: on_exit must register in this shell.)
_tok_keyring_start() {
  local var=$1 dir addr out bus_pid gkd_pid i
  _tok_keyring_pid=
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tok-keyring.XXXXXX")
  mkdir -p "$dir/data" "$dir/run" "$dir/home"
  chmod 700 "$dir" "$dir/run"
  # A bus of our own with no service directories: nothing gets activated behind
  # our back (no second keyring with the wrong dirs, no password prompter).
  cat >"$dir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
  out=$(dbus-daemon --config-file="$dir/bus.conf" --fork --print-address=1 --print-pid=1) || {
    echo "10-keyring.sh: dbus-daemon did not start" >&2; return 1; }
  addr=$(printf '%s\n' "$out" | sed -n 1p)
  bus_pid=$(printf '%s\n' "$out" | sed -n 2p)
  on_exit "kill $bus_pid 2>/dev/null"

  # --unlock reads the password from stdin and creates the `login` collection,
  # which becomes the default alias that new items go to.
  printf '%s' "tok-test-$RANDOM$RANDOM" >"$dir/password"
  DBUS_SESSION_BUS_ADDRESS="$addr" XDG_DATA_HOME="$dir/data" XDG_RUNTIME_DIR="$dir/run" \
    HOME="$dir/home" gnome-keyring-daemon --foreground --unlock --components=secrets \
    <"$dir/password" >"$dir/gnome-keyring.log" 2>&1 &
  gkd_pid=$!
  # Out of the job table: its SIGKILL at exit is expected, not news.
  disown "$gkd_pid"
  _tok_keyring_pid=$gkd_pid
  # SIGKILL: the hung one is stopped and would not act on SIGTERM.
  on_exit "kill -KILL $gkd_pid 2>/dev/null; rm -rf '$dir'"

  # The bus name appears some tens of milliseconds after the start.
  for ((i = 0; i < 200; i++)); do
    if dbus-send --bus="$addr" --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
      grep -q 'boolean true'; then
      break
    fi
    sleep 0.05
  done
  rm -f "$dir/password"
  if ((i == 200)); then
    echo "10-keyring.sh: gnome-keyring did not take org.freedesktop.secrets within 10s:" >&2
    cat "$dir/gnome-keyring.log" >&2
    return 1
  fi
  # A fresh keyring must have a default collection, or new items have nowhere to go.
  if ! dbus-send --bus="$addr" --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \
    org.freedesktop.Secret.Service.ReadAlias string:default | grep -q 'collection/'; then
    echo "10-keyring.sh: the fresh keyring has no default collection" >&2
    return 1
  fi
  export "$var=$addr"
}

_tok_keyring_start TOK_TEST_DBUS
_tok_keyring_start TOK_TEST_DBUS_LOCKED
_tok_keyring_start TOK_TEST_DBUS_HUNG
kill -STOP "$_tok_keyring_pid"
