#!/usr/bin/env bash
# Set up (or reuse) the project's virtualenv and put it on PATH. Source this file.
#
# The venv lives outside the repo, keyed by the sha256 of requirements.lock: an unchanged lock
# reuses it (the PyTorch install is large), a changed or missing one is built from scratch.
# Override the location with CELLSEG_VENV_ROOT.
#
# Packages are compiled to bytecode once, at install: uv does not by default, and where
# PYTHONDONTWRITEBYTECODE is set (as on our CI machines) every process then recompiled the
# sources of torch, timm, smp, GX and Airflow on import (smp 20 -> 9 s, `airflow version` 7.4 ->
# 3.1 s on a 2-core EPYC); every Airflow task and CLI call pays it.
cellseg_env() {
    local repo lock key root venv
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    lock="$repo/requirements.lock"
    key="$(sha256sum "$lock" | cut -c1-16)"
    root="${CELLSEG_VENV_ROOT:-$HOME/.cache/cellseg}"
    venv="$root/venv-py311-$key"
    command -v uv >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.9" || return 1
    if [ ! -f "$venv/.complete" ]; then
        echo "[env] building $venv from requirements.lock (first run takes a few minutes)" >&2
        rm -rf "$venv" && mkdir -p "$root" || return 1
        uv venv -q -p 3.11 "$venv" || return 1
        # Exactly the pinned set: nothing is resolved at install time, so no other torch sneaks in.
        uv pip sync -q --compile-bytecode -p "$venv/bin/python" "$lock" || return 1
        touch "$venv/.complete" "$venv/.bytecode"
    else
        echo "[env] reusing $venv" >&2
    fi
    if [ ! -f "$venv/.bytecode" ]; then  # a venv built before bytecode was compiled
        echo "[env] compiling $venv to bytecode (once, about a minute)" >&2
        uv pip sync -q --compile-bytecode -p "$venv/bin/python" "$lock" || return 1
        touch "$venv/.bytecode"
    fi
    uv pip install -q -p "$venv/bin/python" --no-deps -e "$repo" || return 1
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
}
cellseg_env
