"""The runnable example and the installed package.

* `examples/classify_my_texts.py` on a tiny configuration (CSV -> fine-tune tiny_en -> QAT -> int8 ->
  check -> arena report -> Arduino library);
* the wheel: built from this checkout, installed into a fresh virtual environment (the dependencies come
  from the test's own environment through a .pth file), and used from a folder outside the checkout:
  `embbert export` for all five targets and the example (slow).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "classify_my_texts.py"
TINY = ["--max-examples", "36", "--epochs", "1", "--qat-epochs", "1", "--sequence-length", "16"]
TARGETS = ("sources", "arduino", "platformio", "esp-idf", "cmake")


def _example_outputs_ok(out: Path, stdout: str) -> None:
    assert (out / "model_int8.tflite").stat().st_size > 10_000
    assert (out / "EmbBERT" / "library.properties").is_file()
    assert (out / "EmbBERT" / "src" / "model_settings.h").is_file()
    check = json.loads((out / "check.json").read_text())
    assert check["examples"] == 9 and set(check["models"]) == {"int8_tflite", "int8_tflm"}
    assert json.loads((out / "arena_report.json").read_text())["min_arena_bytes"] > 0
    for preset in ("float", "qat"):
        assert (out / preset / "config.json").is_file() and (out / preset / "metadata.json").is_file()
    assert "int8 TFLM" in stdout and "wrote" in stdout


def test_example_runs_on_a_tiny_configuration(tmp_path, capsys):
    """The example's main() in this process (the wheel test below runs it as a script)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("classify_my_texts", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "my_texts"
    assert example.main([*TINY, "--out", str(out)]) == 0
    _example_outputs_ok(out, capsys.readouterr().out)


def _copy_sources(dst: Path) -> None:
    """The files the build needs, from the working tree (what is checked out now, committed or not)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "runs")
    dst.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    for name in ("embbert", "datasets", "keras_model", "tflite", "micro_app"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)


def test_package_data_ships_every_template_and_source():
    """Every file of micro_app/templates and micro_app/src is matched by a package-data glob of pyproject.toml,
    so the wheel has what `embbert export` renders (the slow wheel test below exports from an installed one)."""
    import glob
    import tomllib

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["embbert.micro_app"]
    root = REPO / "micro_app"
    shipped = {p for g in globs for p in glob.glob(g, root_dir=root, recursive=True) if (root / p).is_file()}
    needed = {str(p.relative_to(root)) for folder in ("templates", "src") for p in (root / folder).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    assert any(n.startswith("templates/cmake/") for n in needed) and "templates/README.md.in" in needed
    assert needed <= shipped, sorted(needed - shipped)


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_exports_every_target_and_runs_the_example(tmp_path):
    src, wheels, venv, work = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    _copy_sources(src)
    import importlib.util

    # offline with this environment's setuptools and wheel; else pip's isolated build (needs the index)
    offline = bool(importlib.util.find_spec("wheel") and importlib.util.find_spec("setuptools"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src),
                            *(["--no-build-isolation"] if offline else [])],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel, = wheels.glob("embbert_micro-*.whl")

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    # the dependencies (TensorFlow & co.) of this environment, after the package's own site-packages
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_embbert_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(py), "-c", "import embbert, embbert.micro_app as m, embbert.tflite.export; "
                            "print(embbert.__file__); print(m.ROOT)"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    package_file, micro_app = where.stdout.split()
    assert Path(package_file).is_relative_to(venv) and Path(micro_app).is_relative_to(venv), where.stdout
    assert not Path(micro_app).is_relative_to(REPO)

    run = work / "emotion-tiny-L64"  # the committed converted example run, copied outside the checkout
    shutil.copytree(REPO / "micro_app" / "example" / "emotion-tiny-L64", run)
    for target in TARGETS:
        out = work / f"pkg-{target}"
        proc = subprocess.run([str(venv / "bin" / "embbert"), "export", str(run), "--target", target, "--out", str(out)],
                              cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (target, proc.stderr[-3000:])
        manifest = json.loads((out / "embbert_export.json").read_text())
        assert manifest["target"] == target
        for rel in manifest["files"]:  # every file the manifest names is there, and no source is empty
            assert (out / rel).is_file() and (out / rel).stat().st_size > 0, (target, rel)
        if target != "sources":
            assert any(rel.endswith("embbert_tokenizer.c") for rel in manifest["files"]), target

    shutil.copy2(EXAMPLE, work / EXAMPLE.name)
    shutil.copy2(EXAMPLE.parent / "my_texts.csv", work / "my_texts.csv")
    proc = subprocess.run([str(py), EXAMPLE.name, *TINY, "--out", "ex"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _example_outputs_ok(work / "ex", proc.stdout)
