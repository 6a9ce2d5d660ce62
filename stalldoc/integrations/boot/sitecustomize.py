"""stalldoc's bootstrap in the child of ``stalldoc run`` (this folder is first on its PYTHONPATH).

Python imports ``sitecustomize`` at start-up. This one runs the next ``sitecustomize`` on the
path (the environment's own, if any), takes stalldoc's settings out of the environment (so the
script's own subprocesses run plainly), and, only if the script imports Keras, patches
``keras.Model.fit`` once Keras is loaded. It imports nothing heavy itself: a script that
never imports Keras pays a few milliseconds.
"""

import os
import sys


def _chain() -> None:
    """Run the sitecustomize this one shadows, as Python would have."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_stalldoc_chained_sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - as site.py does: report and go on
        print(f"Error in sitecustomize ({spec.origin}); set PYTHONVERBOSE for traceback:\n"
              f"{type(exc).__name__}: {exc}", file=sys.stderr)


def _take_settings():
    """stalldoc's variables, removed from this process's environment (and the boot folder from PYTHONPATH)."""
    spec_path = os.environ.pop("STALLDOC_RUN", None)
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and os.path.abspath(p) != here]
    if parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        os.environ.pop("PYTHONPATH", None)
    return spec_path


class _KerasWatch:
    """A meta-path finder that patches ``keras.Model.fit`` right after ``keras`` is imported."""

    def __init__(self, spec_path: str) -> None:
        self.spec_path = spec_path
        self.busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self.busy:
            return None
        import importlib.util

        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module
        watch = self

        def exec_module(module):
            original_exec(module)
            sys.meta_path[:] = [f for f in sys.meta_path if f is not watch]
            watch.patch()

        loader.exec_module = exec_module
        return spec

    def patch(self) -> None:
        try:
            from stalldoc.integrations.run import install
        except ImportError:
            home = _home(self.spec_path)
            if home and home not in sys.path:
                sys.path.append(home)  # after the script's own packages
            try:
                from stalldoc.integrations.run import install
            except Exception as exc:  # noqa: BLE001 - the parent says so, in one line
                _report_failure(self.spec_path, f"cannot import stalldoc in the child: {type(exc).__name__}: {exc}")
                return
        try:
            install(self.spec_path)
        except Exception as exc:  # noqa: BLE001
            _report_failure(self.spec_path, f"cannot patch keras.Model.fit: {type(exc).__name__}: {exc}")


def _home(spec_path: str):
    import json

    try:
        with open(spec_path, encoding="utf-8") as fh:
            return json.load(fh).get("home")
    except (OSError, ValueError):
        return None


def _report_failure(spec_path: str, message: str) -> None:
    import json

    try:
        with open(spec_path, encoding="utf-8") as fh:
            result_path = json.load(fh)["result"]
        with open(result_path, "w", encoding="utf-8") as fh:
            json.dump({"status": "error", "message": message}, fh)
    except (OSError, ValueError, KeyError):
        pass


_chain()
_spec = _take_settings()
if _spec:
    if "keras" in sys.modules:  # imported by a chained sitecustomize or a .pth file
        _KerasWatch(_spec).patch()
    else:
        sys.meta_path.insert(0, _KerasWatch(_spec))
del _spec
