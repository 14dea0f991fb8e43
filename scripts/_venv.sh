# Sourced by scripts/demo and scripts/test: create (or repair) the project's
# virtual environment and install modelreg into it. Not meant to be run.
#
# Debian and Ubuntu ship Python without ensurepip, which `python3 -m venv` needs
# to put pip into the venv; it comes with the pythonX.Y-venv package. Without
# it, venv creation fails after writing bin/python, and that half-made venv
# would then fail every later run with "No module named pip".

step() { printf '==> %s\n' "$*"; }

# The interpreter to build the venv from: python3.11 when installed, else python3.
venv_base_python() {
    command -v python3.11 || command -v python3 || true
}

# True when PYTHON can create a venv with pip in it.
_can_make_venvs() {
    "$1" -c 'import ensurepip, venv' >/dev/null 2>&1
}

# ensure_venv_support PYTHON: install pythonX.Y-venv when PYTHON lacks ensurepip
# (as root, with apt-get); otherwise say exactly what to install and fail.
ensure_venv_support() {
    local python=$1 package
    _can_make_venvs "$python" && return 0
    package=$("$python" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "installing $package (apt-get): $python has no ensurepip to create .venv with"
        apt-get update -qq
        # The versioned package matches this interpreter; python3-venv covers
        # distributions that only ship the unversioned name.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
            true
        _can_make_venvs "$python" && return 0
        echo "error: installed $package, but $python still cannot create virtual environments" >&2
        return 1
    fi
    echo "error: $python cannot create virtual environments (its ensurepip module is missing)." >&2
    echo "Install it, then run this script again:  sudo apt-get install $package" >&2
    return 1
}

# ensure_venv DIR: make DIR a virtual environment with a working pip, creating
# it, or creating it again when an earlier attempt left it half made.
ensure_venv() {
    local dir=$1 python
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    python=$(venv_base_python)
    if [ -z "$python" ]; then
        echo "error: no python3.11 or python3 on PATH; install one:  sudo apt-get install python3.11" >&2
        return 1
    fi
    ensure_venv_support "$python" || return 1
    if [ -e "$dir" ] || [ -L "$dir" ]; then
        if [ ! -f "$dir/pyvenv.cfg" ]; then
            echo "error: $dir exists but is not a virtual environment; move it away" >&2
            return 1
        fi
        step "$dir has no working pip (an earlier setup stopped half way); creating it again"
        rm -rf "$dir"
    fi
    step "creating $dir with $python"
    if ! "$python" -m venv "$dir"; then
        rm -rf "$dir" # so that the next run starts over instead of trusting a broken venv
        echo "error: $python -m venv $dir failed (see above)" >&2
        return 1
    fi
}

# install_modelreg DIR SPEC: install the project (SPEC, e.g. '.[dev]') into DIR, editable.
install_modelreg() {
    "$1/bin/python" -m pip install -q --disable-pip-version-check -e "$2"
}
