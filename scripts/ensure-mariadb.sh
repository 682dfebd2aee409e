#!/bin/sh
# Makes sure the MariaDB server and client that goneaway's tests and demo run are installed.
# On Debian as root it installs them; otherwise it says exactly what to install.
set -eu

# Debian installs mariadbd in /usr/sbin, which a non-root PATH often lacks.
PATH="$PATH:/usr/sbin:/usr/local/sbin"

missing=""
command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || missing="$missing mariadb-server"
command -v mariadb >/dev/null 2>&1 || missing="$missing mariadb-client"
# Extra packages named on the command line: a command of the same name, except for
# python3-pymysql (the Python client the proxy's tests drive), checked by importing it in
# Debian's own python3 (a pyenv or venv python3 earlier on PATH would not see it), and
# galera-4 (the provider library of the harness's Galera clusters, which has no command).
for extra in "$@"; do
    case "$extra" in
        python3-pymysql)
            /usr/bin/python3 -c 'import pymysql' >/dev/null 2>&1 || missing="$missing python3-pymysql" ;;
        galera-4)
            [ -f "${GONEAWAY_GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}" ] || missing="$missing galera-4" ;;
        *)
            command -v "$extra" >/dev/null 2>&1 || missing="$missing $extra" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "goneaway: installing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's postinst would start a system-wide server; goneaway starts its own.
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    exit 0
fi

echo "goneaway: missing:$missing" >&2
echo "goneaway: install them with:  sudo apt-get install$missing" >&2
echo "goneaway: (or point GONEAWAY_MARIADBD and GONEAWAY_MARIADB_INSTALL_DB at your own build)" >&2
exit 1
