# scripts/lib.sh: helpers shared by the set-up scripts; sourced, not run.
# shellcheck shell=bash

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "$PROG: need root to run: $*; run this script as root or install sudo" >&2
    return 1
  fi
}

# True when Debian package $1 is installed.
pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Installs Debian package $1 unless it is installed already. Refreshes the
# package lists only when the package is not known without a refresh.
ensure_pkg() {
  local pkg=$1
  pkg_installed "$pkg" && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$PROG: Debian package $pkg is needed, and there is no apt-get here to install it" >&2
    return 1
  fi
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then
    as_root apt-get update -q >/dev/null
  fi
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then
    echo "$PROG: there is no Debian package $pkg in this system's package sources" >&2
    return 1
  fi
  echo "$PROG: installing Debian package $pkg"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
}

# The repository's top directory (this file's folder's parent).
repo_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}
