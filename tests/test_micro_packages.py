"""`embbert export --target ...`: package layouts and metadata, the committed example, host and
Cortex-M4 builds of everything that needs no TFLM, and the export's safety (hash, arena, atomic, umask)."""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embbert.core.errors import EmbBertError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "micro_app" / "example" / "emotion-tiny-L64"
GENERATED = REPO / "micro_app" / "generated"
EMBBERT = Path(sys.executable).with_name("embbert")
GENERATED_NAMES = {"model_data.h", "model_data.cc", "model_settings.h", "op_resolver.h",
                   "embbert_tokenizer_tables.h", "embbert_tokenizer_tables.c"}


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Every target of the committed example, exported once (no TensorFlow needed)."""
    from embbert.tflite.export import TARGETS, generated_sources, package_files, write_package

    root = tmp_path_factory.mktemp("packages")
    generated, facts = generated_sources(EXAMPLE)
    out = {}
    for target in TARGETS:
        write_package(root / target, package_files(target, generated, facts))
        out[target] = root / target
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _example_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(EXAMPLE, run)
    return run


# --------------------------------------------------------------------------
# the committed example
# --------------------------------------------------------------------------
def test_committed_generated_files_equal_what_the_documented_command_writes(tmp_path):
    """docs/micro_app.md: `embbert export micro_app/example/emotion-tiny-L64 --out micro_app/generated`."""
    from embbert.cli import main

    assert main(["export", str(EXAMPLE), "--out", str(tmp_path / "generated")]) == 0
    fresh, committed = _files(tmp_path / "generated"), _files(GENERATED)
    assert sorted(fresh) == sorted(committed)
    for name in fresh:
        assert fresh[name] == committed[name], f"micro_app/generated/{name} differs: re-run the documented command"
    recorded = (EXAMPLE / "model_int8.tflite.sha256").read_text().split()[0]
    assert hashlib.sha256((EXAMPLE / "model_int8.tflite").read_bytes()).hexdigest() == recorded


def test_every_package_carries_the_same_generated_sources(packages):
    sources = _files(packages["sources"])
    assert set(sources) == GENERATED_NAMES | {"embbert_export.json"}
    where = {"arduino": "src/", "platformio": "src/", "esp-idf": "components/embbert/src/", "cmake": "src/"}
    for target, prefix in where.items():
        files = _files(packages[target])
        for name in GENERATED_NAMES:
            packaged = prefix + (name[:-3] + ".cpp" if name.endswith(".cc") and target in ("arduino", "platformio")
                                 else name)
            assert files[packaged] == sources[name], (target, packaged)
        manifest = json.loads(files["embbert_export.json"])
        assert manifest["target"] == target
        assert set(manifest["files"]) == set(files) - {"embbert_export.json"}
        for rel, digest in manifest["files"].items():
            assert hashlib.sha256(files[rel]).hexdigest() == digest


# --------------------------------------------------------------------------
# layouts and metadata
# --------------------------------------------------------------------------
def _properties(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _includes(text: str) -> list[str]:
    return re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M)


def test_arduino_library_layout(packages):
    root = packages["arduino"]
    props = _properties(root / "library.properties")
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                "architectures", "includes"):
        assert props.get(key), key
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    assert props["category"] in {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control",
                                 "Timing", "Data Storage", "Data Processing", "Other"}
    assert (root / "src" / props["includes"]).is_file()
    src = {p.name for p in (root / "src").iterdir()}
    assert not [n for n in src if n.endswith(".cc")], "older Arduino builders compile .cpp, not .cc"
    assert {"embbert_classifier.cpp", "model_data.cpp", "embbert_tokenizer.c", "embbert_tokenizer_tables.c",
            "embbert_postprocess.c"} <= src
    sketch = (root / "examples" / "EmbBertClassifier" / "EmbBertClassifier.ino").read_text()
    assert "RegisterDebugLogCallback(" in sketch
    assert "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h" in sketch
    assert "#include <EmbBERT.h>" in sketch
    # every quoted include of the library resolves inside src/ or is TFLM's
    for path in (root / "src").iterdir():
        for inc in _includes(path.read_text()):
            assert inc in src or inc.startswith("tensorflow/lite/"), (path.name, inc)


def test_platformio_library_and_example(packages):
    root = packages["platformio"]
    lib = json.loads((root / "library.json").read_text())
    for key in ("name", "version", "description", "keywords", "license", "frameworks", "platforms", "headers",
                "build", "examples"):
        assert key in lib, key
    assert lib["frameworks"] == ["arduino"]
    assert set(lib["platforms"]) == {"nordicnrf52", "espressif32"}
    assert (root / "src" / lib["headers"]).is_file()
    for example in lib["examples"]:
        for f in example["files"]:
            assert (root / example["base"] / f).is_file(), f
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ini.read(root / "examples" / "EmbBertClassifier" / "platformio.ini")
    assert ini["env:nano33ble"]["platform"] == "nordicnrf52" and ini["env:nano33ble"]["board"] == "nano33ble"
    assert ini["env:esp32dev"]["platform"] == "espressif32" and ini["env:esp32dev"]["board"] == "esp32dev"
    assert ini["env"]["framework"] == "arduino"
    assert "-DNDEBUG" in ini["env"]["build_flags"]
    assert "EmbBERT=symlink://../.." in ini["env"]["lib_deps"]
    for env in ("env:nano33ble", "env:esp32dev"):
        assert "${env.lib_deps}" in ini[env]["lib_deps"] and "tflm=symlink://" in ini[env]["lib_deps"]
    assert "RegisterDebugLogCallback(" in (root / "examples" / "EmbBertClassifier" / "src" / "main.cpp").read_text()


def test_esp_idf_component_and_project(packages):
    import yaml

    root = packages["esp-idf"]
    comp = root / "components" / "embbert"
    manifest = yaml.safe_load((comp / "idf_component.yml").read_text())
    assert manifest["dependencies"]["espressif/esp-tflite-micro"].startswith("~1.4")
    assert manifest["dependencies"]["idf"] == ">=5.1"
    cmake = (comp / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"src/([^"]+)"', cmake))
    assert listed == {p.name for p in (comp / "src").iterdir() if p.suffix in (".c", ".cc")}
    assert re.search(r"REQUIRES\s+esp-tflite-micro", cmake) and 'INCLUDE_DIRS "src"' in cmake
    project = (root / "CMakeLists.txt").read_text()
    assert "include($ENV{IDF_PATH}/tools/cmake/project.cmake)" in project and "project(" in project
    main = (root / "main" / "CMakeLists.txt").read_text()
    assert "REQUIRES embbert" in main and (root / "main" / "main.cc").is_file()
    assert "app_main" in (root / "main" / "main.cc").read_text()
    assert "CONFIG_ESP_MAIN_TASK_STACK_SIZE=" in (root / "sdkconfig.defaults").read_text()


def test_generated_marks(packages):
    for target, root in packages.items():
        for rel, data in _files(root).items():
            text = data.decode()
            if rel.startswith(("src/", "components/embbert/src/", "tests/", "examples/", "main/main.cc")) \
                    and Path(rel).name.split(".")[0] not in {n.split(".")[0] for n in GENERATED_NAMES}:
                continue  # micro_app/ sources copied verbatim
            if rel.endswith(".json"):
                continue  # JSON has no comments: library.json says it in "description", the manifest by itself
            assert "GENERATED by `embbert export`" in "\n".join(text.splitlines()[:3]), (target, rel)
    assert "Generated by `embbert export`" in json.loads((packages["platformio"] / "library.json").read_text())[
        "description"]


# --------------------------------------------------------------------------
# builds of what needs no TFLM
# --------------------------------------------------------------------------
@pytest.mark.skipif(not have("cmake") or not have("gcc") or not have("g++"), reason="cmake / gcc not installed")
def test_cmake_package_builds_and_runs_without_tflm(packages, tmp_path):
    from embbert.datasets.tokenizer import load_tokenizer

    root = packages["cmake"]
    build = tmp_path / "build"
    res = subprocess.run(["cmake", "-S", str(root), "-B", str(build), "-DEMBBERT_WITH_TFLM=OFF",
                          "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror", "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    dumped = subprocess.run([str(build / "embbert_dump_model")], capture_output=True, check=True).stdout
    assert dumped == (EXAMPLE / "model_int8.tflite").read_bytes()
    texts = ["I feel wonderful today!", "i'm so ANGRY at you", "Café naïve résumé, 2024.", "  spaces\tand\nlines "]
    lines = "".join("T " + t.encode().hex() + "\n" for t in texts)
    out = subprocess.run([str(build / "embbert_tokenize_main"), "64"], input=lines.encode(),
                         capture_output=True, check=True).stdout.decode().splitlines()
    tok = load_tokenizer(EXAMPLE / "tokenizer")
    assert [list(map(int, line.split())) for line in out] == [list(tok.encode(t)) for t in texts]
    # with TFLM on, a missing tree is a clear configure error
    res = subprocess.run(["cmake", "-S", str(root), "-B", str(tmp_path / "b2")], capture_output=True, text=True)
    assert res.returncode != 0 and "create_tflm_tree.py tree" in res.stderr


_POSTPROCESS_TEST = r"""
#include <stdio.h>
#include "embbert_postprocess.h"
int main(void) {
  const int8_t a[] = {-128, 5, 7, 7, -3};
  const int8_t b[] = {-128, -128};
  int fails = 0;
  fails += embbert_argmax_int8(a, 5) != 2;           /* first of a tie */
  fails += embbert_argmax_int8(b, 2) != 0;
  fails += embbert_argmax_int8(a, 0) != -1;
  fails += embbert_argmax_int8(NULL, 3) != -1;
  fails += embbert_dequantize_int8(-29, 0.5f, -29) != 0.0f;
  fails += embbert_dequantize_int8(127, 0.25f, -1) != 32.0f;
  fails += embbert_dequantize_int8(-128, 0.5f, 0) != -64.0f;
  printf("%d\n", fails);
  return fails != 0;
}
"""


@pytest.mark.skipif(not have("gcc"), reason="gcc not installed")
def test_postprocess_on_host(tmp_path):
    src = REPO / "micro_app" / "src"
    test = tmp_path / "pp.c"
    test.write_text(_POSTPROCESS_TEST)
    exe = tmp_path / "pp"
    res = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsanitize=address,undefined",
                          f"-I{src}", str(src / "embbert_postprocess.c"), str(test), "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "0"


@pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
def test_arduino_sources_cross_compile_for_cortex_m4(packages, tmp_path):
    """Every file of the Arduino library that needs no TFLM compiles for the Nano 33 BLE's M4F, warnings as errors."""
    from embbert.bench.footprint import CORTEX_M4

    src = packages["arduino"] / "src"
    for name in ("embbert_tokenizer.c", "embbert_tokenizer_tables.c", "embbert_postprocess.c", "model_data.cpp"):
        compiler, std = ("arm-none-eabi-g++", "-std=c++17") if name.endswith(".cpp") else ("arm-none-eabi-gcc",
                                                                                              "-std=c99")
        res = subprocess.run([compiler, std, *CORTEX_M4, "-Wall", "-Wextra", "-Werror", f"-I{src}", "-c",
                              str(src / name), "-o", str(tmp_path / (name + ".o"))], capture_output=True, text=True)
        assert res.returncode == 0, (name, res.stderr)


# --------------------------------------------------------------------------
# safety: hash, arena, foreign folders, umask, atomic replacement
# --------------------------------------------------------------------------
def test_model_changed_after_conversion_is_refused(tmp_path):
    from embbert.tflite.export import export_micro_app

    run = _example_run(tmp_path)
    data = bytearray((run / "model_int8.tflite").read_bytes())
    data[-1] ^= 1
    (run / "model_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(EmbBertError, match="hash recorded at conversion"):
        export_micro_app(run, tmp_path / "out")
    (run / "model_int8.tflite.sha256").unlink()
    with pytest.raises(EmbBertError, match="no hash recorded"):
        export_micro_app(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_arena_below_the_measured_minimum_is_refused(tmp_path):
    from embbert.tflite.export import export_micro_app

    run = _example_run(tmp_path)
    report = json.loads((run / "arena_report.json").read_text())
    edited = dict(report, recommended_arena_bytes=16)
    (run / "arena_report.json").write_text(json.dumps(edited))
    # the board's minimum: the host's measured 61,232 B less 2,756 B for 32-bit pointers (91 tensors x 12 B
    # + 52 operators x 32 B)
    assert report["min_arena_bytes"] - report["pointer_savings_bytes"] == 61232 - (91 * 12 + 52 * 32) == 58476
    with pytest.raises(EmbBertError, match="below the minimum TFLM arena of 58476 bytes .measured on the host, less 2756"):
        export_micro_app(run, tmp_path / "out")
    (run / "arena_report.json").write_text(json.dumps(report))
    with pytest.raises(EmbBertError, match="--arena-bytes is 58460 bytes, below"):
        export_micro_app(run, tmp_path / "out", arena_bytes=58460)
    (run / "arena_report.json").write_text(json.dumps(dict(report, model_bytes=report["model_bytes"] + 1)))
    with pytest.raises(EmbBertError, match="measured a model of"):
        export_micro_app(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (run / "arena_report.json").write_text(json.dumps(report))
    export_micro_app(run, tmp_path / "out", arena_bytes=58477)  # allowed, rounded up to 16
    settings = (tmp_path / "out" / "model_settings.h").read_text()
    board, host = settings.split("#else")[1], settings.split("#else")[0]
    assert "kEmbBertTensorArenaSize = 58480," in board
    assert "kEmbBertTensorArenaSize = 61232," in host  # a 64-bit host build never goes below its measured minimum


def test_cli_errors_are_one_line(tmp_path, capsys):
    from embbert.cli import main

    run = _example_run(tmp_path)
    (run / "arena_report.json").write_text(json.dumps({"recommended_arena_bytes": 16, "min_arena_bytes": 61232}))
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("embbert: error: ") and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--target", "zephyr"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["export", str(run), "--arena-bytes", "-5"])
    assert not (tmp_path / "out").exists() and not (run / "micro_app").exists()


def test_default_output_is_inside_the_run_directory(tmp_path):
    from embbert.tflite.export import export_micro_app

    run = _example_run(tmp_path)
    paths = export_micro_app(run, target="esp-idf")
    assert all(p.is_relative_to(run / "micro_app" / "esp-idf") for p in paths)


def test_foreign_folder_is_refused_and_an_earlier_export_replaced_whole(tmp_path):
    from embbert.tflite.export import export_micro_app

    run = _example_run(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EmbBertError, match="not written by `embbert export`"):
        export_micro_app(run, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "pkg"
    export_micro_app(run, out, target="cmake")
    (out / "src" / "stale_from_an_older_run.c").write_text("int x;\n")
    export_micro_app(run, out, target="arduino")  # another target into the same folder: nothing of the old left
    assert not (out / "CMakeLists.txt").exists() and not (out / "src" / "stale_from_an_older_run.c").exists()
    assert (out / "library.properties").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")] == []


def test_replacement_without_renameat2_falls_back_to_two_renames(tmp_path, monkeypatch):
    from embbert.tflite import export

    monkeypatch.setattr(export, "_exchange", lambda a, b: False)  # a platform without RENAME_EXCHANGE
    run = _example_run(tmp_path)
    out = tmp_path / "pkg"
    export.export_micro_app(run, out, target="cmake")
    export.export_micro_app(run, out, target="sources")
    assert _consistent(out) is not None and not (out / "CMakeLists.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")] == []


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_respect_the_umask(tmp_path, umask, file_mode, dir_mode):
    from embbert.tflite.export import export_micro_app

    run = _example_run(tmp_path)
    old = os.umask(umask)
    try:
        export_micro_app(run, tmp_path / "out", target="platformio")
    finally:
        os.umask(old)
    for p in [tmp_path / "out", *(tmp_path / "out").rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (dir_mode if p.is_dir() else file_mode), (p, oct(mode))


def _consistent(out: Path) -> str | None:
    """The manifest's run if `out` holds exactly one export's files, else None."""
    manifest = json.loads((out / "embbert_export.json").read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"embbert_export.json"}
    if files != set(manifest["files"]):
        return None
    for rel, digest in manifest["files"].items():
        if hashlib.sha256((out / rel).read_bytes()).hexdigest() != digest:
            return None
    return manifest["model_sha256"]


def test_killed_export_leaves_old_or_new_never_a_mix(tmp_path):
    """SIGKILL at several moments of `embbert export`: the folder holds one complete export, and the next
    export removes the killed one's temporary folder."""
    if not EMBBERT.is_file():
        pytest.skip("embbert console script not found next to the interpreter")
    run_a = _example_run(tmp_path / "a")
    run_b = tmp_path / "b" / "run"
    shutil.copytree(run_a, run_b)
    # a second, different model: the same bytes with the arena changed give another model_settings.h
    out = tmp_path / "out"
    cmd = lambda run, *extra: [str(EMBBERT), "export", str(run), "--target", "arduino", "--out", str(out), *extra]  # noqa: E731
    t0 = time.time()
    subprocess.run(cmd(run_a), check=True, capture_output=True)
    full = time.time() - t0
    before = (out / "src" / "model_settings.h").read_text()
    for fraction in (0.75, 0.95):
        proc = subprocess.Popen(cmd(run_b, "--arena-bytes", "70000"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _consistent(out) is not None, f"mixed files after a kill at {fraction:.0%}"
        settings = (out / "src" / "model_settings.h").read_text()
        assert settings == before or "kEmbBertTensorArenaSize = 70000," in settings
    subprocess.run(cmd(run_a), check=True, capture_output=True)
    assert _consistent(out) is not None and (out / "src" / "model_settings.h").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")] == []


# --------------------------------------------------------------------------
# micro_app/tools/tflm_arduino_library.py on a tree with create_tflm_tree.py's layout
# --------------------------------------------------------------------------
_TREE = {
    # TFLM's own files include third-party headers by their -I relative names, as in the real tree
    "tensorflow/lite/c/common.h": "#ifndef TF_LITE_STATIC_MEMORY\n#error built without the TFLM defines\n#endif\n"
                                  "typedef struct { int type; } TfLiteTensor;\n",
    "tensorflow/lite/micro/micro_interpreter.h": '#include "flatbuffers/flatbuffers.h"\n'
                                                 '#include "tensorflow/lite/c/common.h"\nint tflm_version(void);\n',
    "tensorflow/lite/micro/micro_interpreter.cc": '#include "tensorflow/lite/micro/micro_interpreter.h"\n'
                                                  '#include "fixedpoint/fixedpoint.h"\n#include <cstdint>\n'
                                                  "int tflm_version(void) { return FB_VERSION + GEMM_ONE; }\n",
    "tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc":
        '#include "Include/arm_nnfunctions.h"\n#include "tensorflow/lite/c/common.h"\n'
        "#ifndef NDEBUG\n#error debug build\n#endif\nint fc(void) { return arm_nn_version(); }\n",
    "third_party/flatbuffers/include/flatbuffers/flatbuffers.h": '#include "flatbuffers/base.h"\n',
    "third_party/flatbuffers/include/flatbuffers/base.h": "#define FB_VERSION 2\n",
    "third_party/gemmlowp/fixedpoint/fixedpoint.h": '#include "../internal/detect_platform.h"\n',
    "third_party/gemmlowp/internal/detect_platform.h": "#define GEMM_ONE 1\n",
    "third_party/cmsis_nn/Include/arm_nnfunctions.h": '#include "arm_nn_types.h"\n#ifdef __cplusplus\nextern "C"\n'
                                                      "#endif\nint arm_nn_version(void);\n",
    "third_party/cmsis_nn/Include/arm_nn_types.h": "typedef int arm_status;\n",
    "third_party/cmsis_nn/Source/arm_nn_version.c": '#include "arm_nnfunctions.h"\n'
                                                    "int arm_nn_version(void) { return 7; }\n",
    "examples/hello_world/main.cc": "int main() { return 0; }\n",
}


@pytest.mark.skipif(not have("g++") or not have("gcc"), reason="gcc/g++ not installed")
def test_tflm_tree_becomes_an_arduino_library(tmp_path):
    tool = REPO / "micro_app" / "tools" / "tflm_arduino_library.py"
    tree = tmp_path / "tree"
    for rel, text in _TREE.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    # as it is, with only the library folder on the include path (what Arduino does), it fails like finding 3
    res = subprocess.run(["g++", "-std=c++17", f"-I{tree}", "-c", str(tree / "tensorflow/lite/micro/micro_interpreter.cc"),
                          "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
    assert res.returncode != 0 and "flatbuffers/flatbuffers.h" in res.stderr
    lib = tmp_path / "libraries" / "tflm_cortexm4"
    res = subprocess.run([sys.executable, str(tool), str(tree), str(lib)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    src = lib / "src"
    props = _properties(lib / "library.properties")
    assert props["name"] == "tflm_cortexm4" and props["architectures"]
    assert not (src / "examples").exists() and not list(src.rglob("*.cc"))
    objs = []
    for path in [*src.rglob("*.cpp"), *src.rglob("*.c")]:
        compiler, std = ("g++", "-std=c++17") if path.suffix == ".cpp" else ("gcc", "-std=c99")
        obj = tmp_path / (path.name + ".o")
        res = subprocess.run([compiler, std, "-Wall", "-Werror", f"-I{src}", "-c", str(path), "-o", str(obj)],
                             capture_output=True, text=True)
        assert res.returncode == 0, (path, res.stderr)
        objs.append(obj)
    # a sketch in another library sees TFLM's defines through the TFLM headers it includes
    sketch = tmp_path / "sketch.cpp"
    sketch.write_text('#include "tensorflow/lite/micro/micro_interpreter.h"\n'
                      "#ifndef NDEBUG\n#error no release define\n#endif\n"
                      "int main() { TfLiteTensor t{}; return tflm_version() == 3 ? t.type : 1; }\n")
    res = subprocess.run(["g++", "-std=c++17", f"-I{src}", str(sketch), *map(str, objs), "-o",
                          str(tmp_path / "sketch")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert subprocess.run([str(tmp_path / "sketch")]).returncode == 0
    # a second run never writes into the library it made
    res = subprocess.run([sys.executable, str(tool), str(tree), str(lib)], capture_output=True, text=True)
    assert res.returncode == 1 and "not empty" in res.stderr
