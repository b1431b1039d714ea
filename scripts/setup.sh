#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine:
# the HDF5 C library, pkg-config and g++ (libzmq is built from source by the
# zmq crate), Python 3 with pip, and the Python packages the tests use as
# independent clients (h5py writes recordings, pyzmq acts as a rig, scipy is
# the reference for the front end's band-pass, pynwb writes and reads NWB
# files, nwbinspector checks exported NWB files), redis-server and redis-py
# (the Redis/BRAND source tests) and pylsl (the LSL tests; its wheel also
# ships the liblsl the daemon loads at run time), prometheus-client (parses the
# admin server's /metrics), headless Chromium (the dashboard test) and
# iceoryx2 (the shared-memory rig; same version as the Rust crate in Cargo.toml).
set -euo pipefail

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need_apt=()
for pkg in libhdf5-dev pkg-config g++ redis-server chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    need_apt+=(python3-pip)
elif ! command -v python3 >/dev/null 2>&1; then
    need_apt+=(python3-pip)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import h5py, zmq, numpy, scipy' >/dev/null 2>&1; then
    echo "setup: installing Python test clients (h5py, pyzmq, numpy, scipy)" >&2
    # Debian's own Python refuses pip installs outside a venv (PEP 668) unless told.
    python3 -m pip install --quiet --disable-pip-version-check h5py pyzmq numpy scipy 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages h5py pyzmq numpy scipy
fi

if ! python3 -c 'import pynwb, nwbinspector' >/dev/null 2>&1; then
    echo "setup: installing NWB test clients (pynwb, nwbinspector)" >&2
    python3 -m pip install --quiet --disable-pip-version-check pynwb nwbinspector 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages pynwb nwbinspector
fi

if ! python3 -c 'import redis, pylsl' >/dev/null 2>&1; then
    echo "setup: installing Redis and LSL test clients (redis, pylsl)" >&2
    python3 -m pip install --quiet --disable-pip-version-check redis pylsl 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages redis pylsl
fi

if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "setup: installing the Prometheus client (parses /metrics in the admin tests)" >&2
    python3 -m pip install --quiet --disable-pip-version-check prometheus-client 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages prometheus-client
fi

# The shared-memory rig (tests/shm_rig.py) must match the daemon's iceoryx2 crate version.
if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("iceoryx2") != "0.10.0")' >/dev/null 2>&1; then
    echo "setup: installing the shared-memory test client (iceoryx2==0.10.0)" >&2
    python3 -m pip install --quiet --disable-pip-version-check iceoryx2==0.10.0 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages iceoryx2==0.10.0
fi
