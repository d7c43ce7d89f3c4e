import subprocess
import sys


def test_elmo_model_never_imports_ray_or_storage_libraries():
    code = (
        "import sys, elmo_model, elmo_model.dump, elmo_model.reference;"
        "bad = [m for m in ('ray', 'pyarrow', 'fsspec', 's3fs') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
