"""``elmo_model`` is plain PyTorch: no Ray and no storage libraries, anywhere in its source."""

import ast
import subprocess
import sys
from pathlib import Path

import elmo_model

FORBIDDEN = ("ray", "fsspec", "s3fs", "pyarrow", "gcsfs", "pipelines")


def forbidden_imports(source: str) -> list[str]:
    """Modules named in ``import``/``from`` statements of ``source`` (at any depth) that are forbidden."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        found += [n for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def test_no_module_of_elmo_model_imports_ray_or_storage_libraries():
    package = Path(elmo_model.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) > 20
    bad = {str(f.relative_to(package)): hits for f in files if (hits := forbidden_imports(f.read_text()))}
    assert bad == {}


def test_the_scan_finds_imports_inside_functions():
    source = "def f():\n    import ray.data\n    from fsspec import open\n    importlib.import_module('s3fs')\n"
    assert forbidden_imports(source) == ["ray.data", "fsspec", "s3fs"]
    assert forbidden_imports("import torch\nfrom elmo_model.model.bilm import BiLm\n") == []


def test_elmo_model_never_imports_ray_or_storage_libraries():
    code = (
        "import sys, elmo_model, elmo_model.infer.dump, elmo_model.testing.reference;"
        "bad = [m for m in ('ray', 'pyarrow', 'fsspec', 's3fs') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
