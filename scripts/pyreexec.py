"""scripts/pyreexec.py: find a Python interpreter that has the modules a
script needs, and run the script under it. Debian's python3-torch and
python3-numpy belong to /usr/bin/python3, which need not be the python3
first on PATH, so the interpreters tried are /usr/bin/python3, then
python3 and python on PATH."""
import os
import shutil
import subprocess
import sys

REEXEC = "TAPEGRAD_PY_REEXEC"


def find_python(modules):
    """The path of an interpreter (not this one) that imports every module
    in the list, or None."""
    seen = {os.path.realpath(sys.executable)} if sys.executable else set()
    candidates = ["/usr/bin/python3"]
    for name in ("python3", "python"):
        path = shutil.which(name)
        if path:
            candidates.append(path)
    for path in candidates:
        real = os.path.realpath(path)
        if real in seen or not os.access(path, os.X_OK):
            continue
        seen.add(real)
        try:
            ok = subprocess.run([path, "-c", "import " + ", ".join(modules)],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
        except OSError:
            ok = False
        if ok:
            return path
    return None


def reexec_with(modules, script, packages, status=1):
    """Runs script again (once) under an interpreter that has the modules;
    when none has them, says which Debian packages to install and exits with
    status."""
    if not os.environ.get(REEXEC):
        other = find_python(modules)
        if other:
            os.environ[REEXEC] = "1"
            os.execv(other, [other, os.path.abspath(script)] + sys.argv[1:])
    sys.stderr.write(
        "%s: no Python here has %s (tried %s, /usr/bin/python3 and python3 on "
        "PATH).\nInstall it: on Debian or Ubuntu `apt-get install %s` (for "
        "/usr/bin/python3), elsewhere `python3 -m pip install %s`.\n"
        % (os.path.basename(script), " and ".join(modules),
           sys.executable or "this interpreter", " ".join(packages),
           " ".join(modules)))
    sys.exit(status)
