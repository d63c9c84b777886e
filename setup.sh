#!/usr/bin/env bash
# Set up outreach-station on this machine, then run the demo or the test suite.
#
#   bash setup.sh demo   # install what is missing, then: station open demo
#   bash setup.sh test   # install what is missing, then: the whole test suite
#   bash setup.sh one tests/test_x.py -k name
#                        # install what is missing, then: only pytest with these
#                        # arguments, in the same keyring session as test, on .venv
#                        # alone, without ruff and mypy (quick, while working)
#   bash setup.sh bench  # install what is missing, then: the benchmarks in bench/
#   bash setup.sh bench bench/bench_startup.py --rounds 11
#                        # one benchmark, with its arguments
#   bash setup.sh drill  # install what is missing, then: the kill drills in bench/
#   bash setup.sh        # install only
#
# As root, missing Debian/Ubuntu packages are installed with apt-get; otherwise
# the exact command to run is printed and nothing is changed.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-install}"
case "$job" in demo|test|one|bench|drill|install) ;; *) echo "usage: bash setup.sh [demo|test|one|bench|drill|install] [arguments]" >&2; exit 2 ;; esac
if [ "$job" = one ] && [ $# -lt 2 ]; then
  echo "usage: bash setup.sh one TEST-PATH... [pytest options], e.g. bash setup.sh one tests/cli/test_persona.py -k list" >&2
  exit 2
fi

PYTHON="${PYTHON:-python3}"
VENV="${STATION_VENV:-.venv}"
# The tests also run on the distribution's own Python (what staff laptops
# have, e.g. Debian 12's 3.11.2), in a second venv, when it is another one.
SYSTEM_PYTHON=/usr/bin/python3
SYSTEM_VENV="${STATION_SYSTEM_VENV:-.venv-system}"
say() { printf 'setup: %s\n' "$*" >&2; }
interpreter() { "$1" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null || echo "$1"; }

have_browser() {
  [ -n "${STATION_BROWSER:-}" ] && [ -x "${STATION_BROWSER}" ] && { say "browser: STATION_BROWSER=${STATION_BROWSER}"; return 0; }
  local own
  own=$(ls -d "${PLAYWRIGHT_BROWSERS_PATH:-$HOME/.cache/ms-playwright}"/chromium-*/chrome-linux*/chrome 2>/dev/null | sort -r | head -n1 || true)
  [ -n "$own" ] && { say "browser: Playwright's own Chromium at $own"; return 0; }
  local name
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$name" >/dev/null 2>&1 && { say "browser: the system's $(command -v "$name")"; return 0; }
  done
  return 1
}

missing=()
have_browser || missing+=(chromium chromium-l10n)
if [ -x /usr/bin/chromium ] && [ ! -d /usr/lib/chromium/locales ] || { [ -d /usr/lib/chromium/locales ] && [ ! -e /usr/lib/chromium/locales/sv.pak ]; }; then
  # Without the translations Chromium's Intl locale falls back to en-US whatever --lang says.
  missing+=(chromium-l10n)
fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# psycopg (the team store) is the pure-Python build over the distribution's libpq.
compgen -G '/usr/lib/*/libpq.so.5' >/dev/null || missing+=(libpq5)
pythons=("$PYTHON")
venvs=("$VENV")
if [ "$job" = test ] && [ -x "$SYSTEM_PYTHON" ] \
   && [ "$(interpreter "$SYSTEM_PYTHON")" != "$(interpreter "$PYTHON")" ]; then
  "$SYSTEM_PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  pythons+=("$SYSTEM_PYTHON")
  venvs+=("$SYSTEM_VENV")
fi
if [ "$job" != install ]; then
  command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
  command -v dbus-run-session >/dev/null || missing+=(dbus dbus-x11)
fi
if [ "$job" = test ] || [ "$job" = one ] || [ "$job" = bench ] || [ "$job" = drill ]; then
  command -v Xvfb >/dev/null || missing+=(xvfb xauth)
  command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
  command -v dbus-run-session >/dev/null || missing+=(dbus dbus-x11)
  command -v xclip >/dev/null || missing+=(xclip)
fi
if [ "$job" = test ] || [ "$job" = one ]; then
  # npm installs the third-party fingerprinting libraries for tests/browser/test_thirdparty.py.
  command -v npm >/dev/null || missing+=(nodejs npm)
  # The team tests start a private PostgreSQL server from the distribution's packages.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  # Desktop launchers: entries checked by desktop-file-validate, notifications shown by dunst.
  command -v desktop-file-validate >/dev/null || missing+=(desktop-file-utils)
  command -v dunst >/dev/null || missing+=(dunst)
  command -v notify-send >/dev/null || missing+=(libnotify-bin)
  # The fonts docs/it-deployment.md recommends: their metric aliases must not fail a persona's font check.
  [ -e /usr/share/fonts/truetype/croscore/Arimo-Regular.ttf ] || missing+=(fonts-croscore)
  [ -d /usr/share/fonts/truetype/liberation ] || missing+=(fonts-liberation)
  [ -e /usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf ] || missing+=(fonts-urw-base35)
  # Noto as a laptop has it (docs/it-deployment.md): its core families, mono and
  # colour emoji, not the fonts-noto metapackage's 300 MB of CJK and extras.
  [ -e /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf ] || missing+=(fonts-noto-core)
  [ -e /usr/share/fonts/truetype/noto/NotoMono-Regular.ttf ] || missing+=(fonts-noto-mono)
  [ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
fi
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing system packages. Run, then try again:"
    echo "  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

install_into() {  # PYTHON VENV
  if [ ! -x "$2/bin/python" ]; then
    say "creating $2 with $1"
    "$1" -m venv "$2"
  fi
  if ! "$2/bin/python" -c 'import outreach_station, pytest, mypy' 2>/dev/null \
     || [ pyproject.toml -nt "$2/.station-installed" ]; then
    say "installing outreach-station and its dependencies into $2"
    "$2/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$2/.station-installed"
  fi
}
for i in "${!venvs[@]}"; do
  install_into "${pythons[$i]}" "${venvs[$i]}"
done
thirdparty=tests/thirdparty
if { [ "$job" = test ] || [ "$job" = one ]; } && { [ ! -d "$thirdparty/node_modules" ] \
     || [ "$thirdparty/package-lock.json" -nt "$thirdparty/node_modules" ]; }; then
  say "installing the third-party fingerprinting libraries into $thirdparty/node_modules"
  npm ci --prefix "$thirdparty" --no-audit --no-fund --silent
  touch "$thirdparty/node_modules"
fi

# Runs "$@" (a command, or one of the functions below) in a real Secret Service
# for the keyring tests: gnome-keyring in a private D-Bus session, keeping its
# keyring in a fresh directory, so that no keyring of this machine's user (with
# another password) is touched or gets in the way.
in_keyring_session() {
  dbus-run-session -- bash -c '
    set -e
    keyrings=$(mktemp -d)
    trap "rm -rf \"$keyrings\"" EXIT
    eval "$(printf station-test | XDG_DATA_HOME="$keyrings" gnome-keyring-daemon --unlock --components=secrets)"
    export GNOME_KEYRING_CONTROL
    "$@"
  ' keyring-session "$@"
}
# These run inside the session: exported, so that its bash knows them.
run_pytest() {  # VENV [PYTEST-ARGUMENTS...]
  # Keyring, browser and display tests must run here, never be skipped.
  STATION_TEST_REQUIRE_REAL_PARTS=1 "$1/bin/python" -m pytest "${@:2}"
}
run_tests() {  # COUNT VENV... [PYTEST-ARGUMENTS...]: linters once, then mypy and pytest per venv
  local count=$1
  local venvs=("${@:2:$count}")
  shift $((1 + count))
  "${venvs[0]}/bin/ruff" check outreach_station tests bench
  "${venvs[0]}/bin/ruff" format --check outreach_station tests bench
  local failed=() venv version status
  for venv in "${venvs[@]}"; do
    version=$("$venv/bin/python" -c "import platform; print(platform.python_version())")
    printf "setup: mypy and pytest on Python %s (%s)\n" "$version" "$venv" >&2
    "$venv/bin/mypy" || { failed+=("mypy on Python $version"); continue; }
    status=0
    run_pytest "$venv" "$@" || status=$?
    # 5 is "no tests collected": a run that tested nothing has not passed.
    [ "$status" = 0 ] || failed+=("pytest on Python $version (exit $status)")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    printf "setup: failed: %s\n" "${failed[@]}" >&2
    return 1
  fi
}
run_bench() {  # VENV SCRIPT [ARGUMENTS...]
  PYTHONPATH=. "$1/bin/python" "${@:2}"
}
export -f run_pytest run_tests run_bench

case "$job" in
  install)
    say "done: $VENV/bin/station --help"
    ;;
  demo)
    headless=()
    if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      say "no display here: opening the demo headless; its findings are printed below."
      headless=(--headless)
    fi
    if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
      exec "$VENV/bin/station" open demo "${headless[@]}"
    fi
    # No desktop session, so no keyring service: station refuses to seal without
    # one. For the demo only, run a throwaway keyring and a throwaway station home.
    say "no keyring service here (no desktop session): the demo uses a temporary keyring"
    say "and a temporary station home, both removed when it ends."
    exec dbus-run-session -- bash -c '
      scratch=$(mktemp -d)
      trap "rm -rf \"$scratch\"" EXIT
      eval "$(printf demo | XDG_DATA_HOME="$scratch/keyrings" gnome-keyring-daemon --unlock --components=secrets)"
      export GNOME_KEYRING_CONTROL STATION_HOME="$scratch/home"
      "$0/bin/station" open demo "${@}"
    ' "$VENV" "${headless[@]}"
    ;;
  test)
    in_keyring_session run_tests "${#venvs[@]}" "${venvs[@]}" "${@:2}"
    ;;
  one)
    in_keyring_session run_pytest "$VENV" "${@:2}"
    ;;
  bench)
    if [ $# -ge 2 ]; then
      in_keyring_session run_bench "$VENV" "${@:2}"
    else
      for script in bench/bench_open.py bench/bench_seal.py bench/bench_startup.py bench/bench_team.py; do
        in_keyring_session run_bench "$VENV" "$script"
      done
    fi
    ;;
  drill)
    # SIGKILL at five moments of a session, and what a killed browser loses.
    in_keyring_session run_bench "$VENV" bench/drill_seal_kill.py --rounds 10
    in_keyring_session run_bench "$VENV" bench/drill_kill_window.py
    ;;
esac
