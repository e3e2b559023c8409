# shellcheck shell=bash
# What a fresh Debian machine lacks for branchyard's scripts, checked before anything else runs.
# Sourced by scripts/demo, scripts/test and .ci/run:   . scripts/lib/prereqs.sh && prereqs venv git ps
#
#   venv  `python3 -m venv` works: the interpreter has ensurepip and its pip wheel (Debian: python3.X-venv)
#   git   git                                                                         (Debian: git)
#   ps    ps, which tests call                                                        (Debian: procps)
#   netns `ip` and `nft`, for network isolation (as root only: without root it is off) (Debian: iproute2, nftables)
#   chromium  the browser the dashboard's tests drive through Playwright                (Debian: chromium)
#
# As root with apt-get, the missing packages are installed (apt-get update -qq && apt-get install -y -qq …).
# Otherwise the script stops with one line naming them. $PYTHON (default python3) is the interpreter checked.

_prereq_python() { printf '%s' "${PYTHON:-python3}"; }

# One missing Debian package per line for the named needs; "!message" for what no package can fix.
_prereq_missing() {
  local python need have_python=1 version
  python=$(_prereq_python)
  if ! command -v "$python" >/dev/null 2>&1; then
    [ "$python" = python3 ] || { echo "!PYTHON=$python: no such command"; return; }
    echo python3
    have_python=
  elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || version=unusable
    echo "!branchyard needs Python 3.11 or newer; $python is $version (set PYTHON=/path/to/python3.11)"
    return
  fi
  for need in "$@"; do
    case $need in
      venv)
        [ -n "$have_python" ] || { echo python3-venv; continue; }  # Debian's default python3.X-venv
        # venv runs ensurepip, which needs the module (Debian ships it in python3.X-venv) and a pip wheel;
        # version() finds that wheel (it raises without one). A .venv made before (with its pip) needs neither.
        [ -x .venv/bin/pip ] && continue
        "$python" -c 'import ensurepip, sys; sys.exit(not ensurepip.version())' >/dev/null 2>&1 && continue
        if "$python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")' >/dev/null 2>&1; then
          "$python" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])'
        else
          echo "!$(command -v "$python") has no ensurepip, so \`$python -m venv\` cannot work: use a Python built with it (set PYTHON=…)"
        fi
        ;;
      git) command -v git >/dev/null 2>&1 || echo git ;;
      ps) command -v ps >/dev/null 2>&1 || echo procps ;;
      netns)
        [ "$(id -u)" = 0 ] || continue  # isolation needs root; without it branchyard keeps the host network
        command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || echo iproute2
        command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || echo nftables
        ;;
      chromium) command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || echo chromium ;;
      *) echo "!prereqs: unknown need '$need'" ;;
    esac
  done
}

_prereq_die() {
  echo "error: $*" >&2
  exit 1
}

# prereqs NEED… — install (root + apt-get) or name (otherwise) what is missing; return when all is there.
prereqs() {
  local missing packages=() line
  missing=$(_prereq_missing "$@")
  [ -z "$missing" ] && return 0
  while IFS= read -r line; do
    case $line in
      "!"*) _prereq_die "${line#!}" ;;
      *) packages+=("$line") ;;
    esac
  done <<<"$missing"
  if [ "$(id -u)" != 0 ]; then
    _prereq_die "missing Debian package(s) ${packages[*]}: install them with  sudo apt-get install -y ${packages[*]}"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _prereq_die "missing package(s) ${packages[*]} (Debian names) and no apt-get to install them: install them, then run this again"
  fi
  echo "==> installing ${packages[*]} (apt-get)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }; then
    _prereq_die "apt-get could not install ${packages[*]} (see its output above)"
  fi
  missing=$(_prereq_missing "$@")
  [ -z "$missing" ] || _prereq_die "still missing after apt-get install: $(echo "$missing" | tr '\n' ' ' | sed 's/ $//')"
}
