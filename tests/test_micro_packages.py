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
GENERATED_NAMES = {"model_data.h", "model_data.cc", "model_settings.h", "embbert_ops.h", "embbert_ops.c",
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
    from embbert.tflite.export import ARDUINO_ARCHITECTURES, TFLM_LIBRARY

    root = packages["arduino"]
    props = _properties(root / "library.properties")
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                "architectures", "includes"):
        assert props.get(key), key
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    assert props["category"] in {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control",
                                 "Timing", "Data Storage", "Data Processing", "Other"}
    assert props["architectures"] == ARDUINO_ARCHITECTURES == "mbed_nano,mbed"  # what the TFLM archive is built for
    assert props["depends"] == TFLM_LIBRARY
    assert (root / "src" / props["includes"]).is_file()
    src = {p.name for p in (root / "src").iterdir()}
    assert not [n for n in src if n.endswith(".cc")], "older Arduino builders compile .cpp, not .cc"
    assert {"embbert_classifier.c", "embbert_ops.c", "model_data.cpp", "embbert_tokenizer.c",
            "embbert_tokenizer_tables.c", "embbert_postprocess.c"} <= src
    # the C interface to TFLM lives in the precompiled TFLM library, never here: if this library had the
    # header, the Arduino builder would resolve the include here and never link the TFLM library
    assert not {"embbert_tflm.h", "embbert_tflm.cpp"} & src
    sketch = (root / "examples" / "EmbBertClassifier" / "EmbBertClassifier.ino").read_text()
    assert "#include <EmbBERT.h>" in sketch and "EmbBertSetLog(" in sketch
    assert "tensorflow/" not in sketch, "the sketch is compiled with the core's gnu++14: no TFLM header"
    assert not re.search(r"while\s*\(\s*!\s*Serial\s*\)\s*\{\s*\}", sketch), "must not block without a monitor"
    # every quoted include of the library resolves at its src/ root or is the TFLM library's root header
    for path in (root / "src").iterdir():
        for inc in _includes(path.read_text()):
            assert inc in src or inc == "embbert_tflm.h", (path.name, inc)


def test_platformio_library_and_example(packages):
    root = packages["platformio"]
    lib = json.loads((root / "library.json").read_text())
    for key in ("name", "version", "description", "keywords", "license", "frameworks", "platforms", "headers",
                "build", "examples"):
        assert key in lib, key
    assert lib["frameworks"] == ["arduino"]
    assert lib["platforms"] == ["nordicnrf52"]
    assert (root / "src" / lib["headers"]).is_file()
    for example in lib["examples"]:
        for f in example["files"]:
            assert (root / example["base"] / f).is_file(), f
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ini.read(root / "examples" / "EmbBertClassifier" / "platformio.ini")
    assert ini["env:nano33ble"]["platform"] == "nordicnrf52" and ini["env:nano33ble"]["board"] == "nano33ble"
    assert ini["env"]["framework"] == "arduino"
    assert "EmbBERT=symlink://../.." in ini["env"]["lib_deps"]
    assert "${env.lib_deps}" in ini["env:nano33ble"]["lib_deps"]
    assert "EmbBERT_TFLM=symlink://${sysenv.TFLM_ARDUINO_M4}" in ini["env:nano33ble"]["lib_deps"]
    flags = ini["env:nano33ble"]["build_flags"].split()
    assert flags == ["-L${sysenv.TFLM_ARDUINO_M4}/src/cortex-m4/fpv4-sp-d16-softfp", "-lEmbBERT_TFLM"]
    assert "EmbBertSetLog(" in (root / "examples" / "EmbBertClassifier" / "src" / "main.cpp").read_text()


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


#: the flags the Nano 33 BLE core (ArduinoCore-mbed 4.6.0, variants/ARDUINO_NANO33BLE/{cflags,cxxflags}.txt and
#: platform.txt) compiles libraries and sketches with, less its own include and define files
MBED_NANO_FLAGS = ["-Os", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter",
                   "-fdata-sections", "-ffunction-sections", "-fmessage-length=0", "-fno-exceptions",
                   "-fomit-frame-pointer", "-funsigned-char", "-mcpu=cortex-m4", "-mfloat-abi=softfp",
                   "-mfpu=fpv4-sp-d16", "-mthumb", "-DARDUINO_ARCH_NRF52840", "-DARDUINO_ARCH_MBED"]


@pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
def test_arduino_library_compiles_as_the_arduino_builder_would(packages, tmp_path):
    """The EmbBERT library and its sketch with the core's gnu++14 / gnu11 flags and the builder's include rule
    (only the src/ root of each library; the TFLM library's root holds just embbert_tflm.h), warnings as errors;
    the objects need nothing of TFLM's C++ API, only the C functions the TFLM library's header declares."""
    from embbert.tflite.export import supported_ops

    root = packages["arduino"]
    tflm_src = tmp_path / "EmbBERT_TFLM" / "src"
    tflm_src.mkdir(parents=True)
    shutil.copyfile(REPO / "micro_app" / "src" / "embbert_tflm.h", tflm_src / "embbert_tflm.h")
    stub = REPO / "micro_app" / "tests" / "arduino_stub"
    sketch = tmp_path / "EmbBertClassifier.ino.cpp"  # the builder compiles the .ino as C++
    sketch.write_text((root / "examples" / "EmbBertClassifier" / "EmbBertClassifier.ino").read_text())
    profiled = tmp_path / "EmbBertClassifier.profiled.ino.cpp"  # with the opt-in per-operator profile
    profiled.write_text("#define EMBBERT_PROFILE 1\n" + sketch.read_text())
    units = [p for p in sorted((root / "src").iterdir()) if p.suffix in (".c", ".cpp")] + [sketch, profiled]
    objects = []
    for unit in units:
        compiler, std = ("arm-none-eabi-gcc", "-std=gnu11") if unit.suffix == ".c" else (
            "arm-none-eabi-g++", "-std=gnu++14")
        extra = ["-fno-rtti"] if unit.suffix != ".c" else []
        obj = tmp_path / (unit.name + ".o")
        res = subprocess.run([compiler, std, *extra, *MBED_NANO_FLAGS, "-Werror", f"-I{root / 'src'}",
                              f"-I{tflm_src}", f"-I{stub}", "-c", str(unit), "-o", str(obj)],
                             capture_output=True, text=True)
        assert res.returncode == 0, (unit.name, res.stderr)
        objects.append(str(obj))
    nm = subprocess.run(["arm-none-eabi-nm", "-u", *objects], capture_output=True, text=True, check=True).stdout
    profiled_nm = subprocess.run(["arm-none-eabi-nm", "-u", objects[-1]], capture_output=True, text=True).stdout
    assert "EmbBertEnableProfiling" in profiled_nm and "EmbBertLogProfile" in profiled_nm
    undefined = {line.split()[-1] for line in nm.splitlines() if line.strip().startswith("U ")}
    assert not [u for u in undefined if "tflite" in u], "C++ TFLM symbols would need C++17 headers"
    wanted = {u for u in undefined if u.startswith("embbert_tflm_")}
    declared = set(re.findall(r"^\w[\w ]*?\**\s*(embbert_tflm_\w+)\(", (tflm_src / "embbert_tflm.h").read_text(),
                              re.M))
    assert wanted <= declared, wanted - declared
    registered = {u for u in wanted if u.startswith("embbert_tflm_add_")}
    assert registered == {supported_ops()[op] for op in _model_ops()}


def _model_ops() -> list[str]:
    from embbert.tflite.export import read_model_info

    return read_model_info((EXAMPLE / "model_int8.tflite").read_bytes()).ops


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
    # the board's minimum: the host's measured minimum less what 32-bit pointers save (12 B per tensor and
    # 32 B per operator of the graph, tflite/arena.py pointer_savings)
    from embbert.tflite.arena import pointer_savings
    from embbert.tflite.graph import read_graph

    host_min, savings = report["min_arena_bytes"], report["pointer_savings_bytes"]
    graph = read_graph((run / "model_int8.tflite").read_bytes())
    assert savings == pointer_savings(graph) > 0
    board_min = host_min - savings
    with pytest.raises(EmbBertError, match=f"below the minimum TFLM arena of {board_min} bytes .measured on the host, "
                                           f"less {savings}"):
        export_micro_app(run, tmp_path / "out")
    (run / "arena_report.json").write_text(json.dumps(report))
    with pytest.raises(EmbBertError, match=f"--arena-bytes is {board_min - 16} bytes, below"):
        export_micro_app(run, tmp_path / "out", arena_bytes=board_min - 16)
    (run / "arena_report.json").write_text(json.dumps(dict(report, model_bytes=report["model_bytes"] + 1)))
    with pytest.raises(EmbBertError, match="measured a model of"):
        export_micro_app(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (run / "arena_report.json").write_text(json.dumps(report))
    export_micro_app(run, tmp_path / "out", arena_bytes=board_min + 1)  # allowed, rounded up to 16
    settings = (tmp_path / "out" / "model_settings.h").read_text()
    board, host = settings.split("#else")[1], settings.split("#else")[0]
    assert f"kEmbBertTensorArenaSize = {(board_min + 1 + 15) // 16 * 16}," in board
    # a 64-bit host build never goes below its measured minimum
    assert f"kEmbBertTensorArenaSize = {(max(host_min, board_min + 1) + 15) // 16 * 16}," in host


def test_cli_errors_are_one_line(tmp_path, capsys):
    from embbert.cli import main

    run = _example_run(tmp_path)
    (run / "arena_report.json").write_text(json.dumps({"recommended_arena_bytes": 16, "min_arena_bytes": 32768}))
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
    from embbert.core import files
    from embbert.tflite import export

    monkeypatch.setattr(files, "exchange", lambda a, b: False)  # a platform without RENAME_EXCHANGE
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
# micro_app/tools/tflm_arduino_library.py on a stand-in tree with create_tflm_tree.py's layout
# --------------------------------------------------------------------------
def _fake_tflm_tree(tree: Path) -> None:
    """Headers with the names and the parts of TFLM's API that embbert_tflm.cc uses, a kernel, CMSIS-NN and
    the cycle-counter file: enough for the tool to compile, archive and lay out a library, and for a link."""
    shim = (REPO / "micro_app" / "src" / "embbert_tflm.cc").read_text()
    methods = re.findall(r"^EMBBERT_TFLM_OP\(\w+, (Add\w+)\)$", shim, re.M)
    resolver = "".join(f"  TfLiteStatus {m}() {{ return Take(\"{m}\"); }}\n" for m in methods)
    files = {
        "tensorflow/lite/c/common.h":
            "#pragma once\n#include <stddef.h>\n#include <stdint.h>\n"
            "typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;\n"
            "typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteInt16 = 7, "
            "kTfLiteInt8 = 9 } TfLiteType;\n"
            "typedef struct { int size; int data[6]; } TfLiteIntArray;\n"
            "typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;\n"
            "typedef union { void* data; int32_t* i32; int8_t* int8; } TfLitePtrUnion;\n"
            "typedef struct { TfLiteType type; TfLitePtrUnion data; TfLiteIntArray* dims; "
            "TfLiteQuantizationParams params; size_t bytes; } TfLiteTensor;\n",
        "tensorflow/lite/micro/micro_log.h": "#pragma once\nvoid MicroPrintf(const char* format, ...);\n",
        "tensorflow/lite/micro/compatibility.h":
            "#pragma once\n#define TF_LITE_REMOVE_VIRTUAL_DELETE \\\n  void operator delete(void* p) {}\n",
        "tensorflow/lite/micro/micro_time.h":
            "#pragma once\n#include <stdint.h>\nnamespace tflite { uint32_t GetCurrentTimeTicks(); }\n",
        "tensorflow/lite/micro/micro_profiler_interface.h":
            "#pragma once\n#include <stdint.h>\nnamespace tflite { class MicroProfilerInterface { public:\n"
            "  virtual ~MicroProfilerInterface() {}\n  virtual uint32_t BeginEvent(const char* tag) = 0;\n"
            "  virtual void EndEvent(uint32_t event_handle) = 0;\n}; }\n",
        "tensorflow/lite/micro/system_setup.h": "#pragma once\nnamespace tflite { void InitializeTarget(); }\n",
        "tensorflow/lite/schema/schema_generated.h":
            "#pragma once\n#define TFLITE_SCHEMA_VERSION 3\nnamespace tflite { struct Model { int version() const "
            "{ return 3; } }; inline const Model* GetModel(const void* p) { return static_cast<const Model*>(p); } }\n",
        "tensorflow/lite/micro/micro_mutable_op_resolver.h":
            "#pragma once\n#include \"tensorflow/lite/c/common.h\"\nnamespace tflite {\n"
            "TfLiteStatus RegisterKernel(const char* name);\n"
            "template <unsigned N> class MicroMutableOpResolver {\n public:\n"
            "  TfLiteStatus Take(const char* name) { return n_ < N ? (++n_, RegisterKernel(name)) : kTfLiteError; }\n"
            + resolver + " private:\n  unsigned n_ = 0;\n};\n}  // namespace tflite\n",
        "tensorflow/lite/micro/micro_interpreter.h":
            "#pragma once\n#include <type_traits>\n#include \"flatbuffers/flatbuffers.h\"\n"
            "#include \"tensorflow/lite/c/common.h\"\n#include \"tensorflow/lite/schema/schema_generated.h\"\n"
            "namespace tflite {\n// C++17, as the real TFLM: the reason the library is precompiled\n"
            "template <typename T> constexpr bool kIsInt = std::is_integral_v<T>;\n"
            "class MicroInterpreter {\n public:\n  template <typename R>\n"
            "  MicroInterpreter(const Model*, R&, uint8_t* arena, size_t n, void* = nullptr, void* = nullptr)"
            " : arena_(arena), n_(n) {}\n"
            "  TfLiteStatus AllocateTensors();\n  size_t inputs_size() const { return 2; }\n"
            "  size_t outputs_size() const { return 1; }\n  TfLiteTensor* input(size_t i);\n"
            "  TfLiteTensor* output(size_t i);\n  TfLiteStatus Invoke();\n"
            "  size_t arena_used_bytes() const { return n_ / 2; }\n private:\n  uint8_t* arena_;\n  size_t n_;\n};\n}\n",
        "tensorflow/lite/micro/micro_interpreter.cc":
            "#include \"tensorflow/lite/micro/micro_interpreter.h\"\n#include \"fixedpoint/fixedpoint.h\"\n"
            "namespace tflite {\nTfLiteStatus MicroInterpreter::AllocateTensors() { return kTfLiteOk; }\n"
            "TfLiteStatus MicroInterpreter::Invoke() { return kTfLiteOk; }\n"
            "TfLiteTensor* MicroInterpreter::input(size_t) { return nullptr; }\n"
            "TfLiteTensor* MicroInterpreter::output(size_t) { return nullptr; }\n"
            "void InitializeTarget() {}\n}\nvoid MicroPrintf(const char*, ...) {}\n",
        "tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc":
            "#include \"Include/arm_nnfunctions.h\"\n#include \"tensorflow/lite/c/common.h\"\n"
            "#ifndef NDEBUG\n#error debug build\n#endif\n"
            "#if !defined(__ARM_PCS_VFP) && !defined(__ARM_FP)\n#error no FPU\n#endif\n"
            "namespace tflite { TfLiteStatus RegisterKernel(const char*) { return arm_nn_version() == 7 ? "
            "kTfLiteOk : kTfLiteError; } }\n",
        "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h":
            "#pragma once\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
            "typedef void (*DebugLogCallback)(const char* s);\nvoid RegisterDebugLogCallback(DebugLogCallback cb);\n"
            "#ifdef __cplusplus\n}\n#endif\n",
        "tensorflow/lite/micro/cortex_m_generic/micro_time.cc":
            "#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE\n"
            "#include \"tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h\"\n"
            "extern \"C\" void RegisterDebugLogCallback(DebugLogCallback) {}\n"
            "#include \"tensorflow/lite/micro/micro_time.h\"\n"
            "namespace tflite { uint32_t GetCurrentTimeTicks() { DCB->DEMCR |= DCB_DEMCR_TRCENA_Msk; "
            "return DWT->CYCCNT; } }\n",
        "third_party/flatbuffers/include/flatbuffers/flatbuffers.h": "#pragma once\n#include \"flatbuffers/base.h\"\n",
        "third_party/flatbuffers/include/flatbuffers/base.h": "#pragma once\n#define FB_VERSION 2\n",
        "third_party/gemmlowp/fixedpoint/fixedpoint.h": "#pragma once\n",
        "third_party/cmsis_nn/Include/arm_nnfunctions.h":
            "#pragma once\n#ifdef __cplusplus\nextern \"C\"\n#endif\nint arm_nn_version(void);\n",
        "third_party/cmsis_nn/Source/arm_nn_version.c": "#include \"arm_nnfunctions.h\"\n"
                                                        "int arm_nn_version(void) { return 7; }\n",
        "third_party/cmsis_nn/LICENSE": "Apache-2.0 (stand-in)\n",
        "signal/src/window.cc": "#error signal/ is not compiled\n",
        "LICENSE": "Apache-2.0 (stand-in)\n",
    }
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)


_ARDUINO_STUBS = r"""
#include "Arduino.h"
StubSerial Serial;
unsigned long millis(void) { return 0; }
void StubSerial::begin(unsigned long) {}
StubSerial::operator bool() { return true; }
int StubSerial::available() { return 0; }
int StubSerial::read() { return -1; }
size_t StubSerial::print(const char*) { return 0; }
size_t StubSerial::print(unsigned long) { return 0; }
size_t StubSerial::print(double, int) { return 0; }
size_t StubSerial::println(const char*) { return 0; }
size_t StubSerial::println(unsigned long) { return 0; }
int main() { setup(); loop(); return 0; }
"""


@pytest.mark.skipif(not have("arm-none-eabi-g++"), reason="arm-none-eabi-gcc not installed")
def test_tflm_tool_makes_a_precompiled_library_the_sketch_links_against(packages, tmp_path):
    tool = REPO / "micro_app" / "tools" / "tflm_arduino_library.py"
    tree = tmp_path / "tree"
    _fake_tflm_tree(tree)
    lib = tmp_path / "libraries" / "EmbBERT_TFLM"
    build = tmp_path / "objects"
    res = subprocess.run([sys.executable, str(tool), str(tree), str(lib), "--jobs", "2", "--build-dir", str(build)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # the kept objects are reused: a second library from the same tree compiles nothing again
    stamps = {p: p.stat().st_mtime_ns for p in build.glob("*.o")}
    assert len(stamps) == 5  # micro_interpreter, fully_connected, micro_time, arm_nn_version, embbert_tflm
    res = subprocess.run([sys.executable, str(tool), str(tree), str(tmp_path / "again"), "--build-dir", str(build)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert {p: p.stat().st_mtime_ns for p in build.glob("*.o")} == stamps
    # a changed header is a changed build: nothing stale is reused
    (tree / "tensorflow" / "lite" / "micro" / "micro_log.h").write_text(
        "#pragma once\nvoid MicroPrintf(const char* format, ...);\n// changed\n")
    res = subprocess.run([sys.executable, str(tool), str(tree), str(tmp_path / "third"), "--build-dir", str(build)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(list(build.glob("*.o"))) == 2 * len(stamps)
    props = _properties(lib / "library.properties")
    assert props["name"] == "EmbBERT_TFLM" and props["precompiled"] == "true"
    assert props["ldflags"] == "-lEmbBERT_TFLM" and props["architectures"] == "mbed_nano,mbed"
    assert props["includes"] == "embbert_tflm.h"
    # arduino-cli's folder for the mbed core: src/{build.mcu}/{-mfpu value}-{-mfloat-abi value}
    archive = lib / "src" / "cortex-m4" / "fpv4-sp-d16-softfp" / "libEmbBERT_TFLM.a"
    assert archive.is_file()
    assert sorted(p.name for p in (lib / "src").iterdir()) == ["cortex-m4", "embbert_tflm.h"]
    assert (lib / "src" / "embbert_tflm.h").read_bytes() == (REPO / "micro_app" / "src" / "embbert_tflm.h").read_bytes()
    assert (lib / "licenses" / "third_party" / "cmsis_nn" / "LICENSE").is_file() and (lib / "licenses" / "LICENSE").is_file()
    members = subprocess.run(["arm-none-eabi-ar", "t", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert any("embbert_tflm" in m for m in members) and not any("window" in m for m in members)
    facts = json.loads((lib / "build.json").read_text())
    assert facts["float_abi"] == "softfp" and "-std=gnu++17" in facts["cxx_flags"]
    # link the exported library + sketch (core stubs) against the archive, as the board's link does: the float
    # ABI must match the core's (softfp) and --gc-sections must drop the operators the model does not register
    root = packages["arduino"]
    stub = REPO / "micro_app" / "tests" / "arduino_stub"
    sketch = tmp_path / "sketch.cpp"  # with the opt-in profile, so that its functions must link too
    sketch.write_text("#define EMBBERT_PROFILE 1\n"
                      + (root / "examples" / "EmbBertClassifier" / "EmbBertClassifier.ino").read_text()
                      + _ARDUINO_STUBS)
    objs = []
    for unit in [p for p in sorted((root / "src").iterdir()) if p.suffix in (".c", ".cpp")] + [sketch]:
        compiler, std = ("arm-none-eabi-gcc", "-std=gnu11") if unit.suffix == ".c" else (
            "arm-none-eabi-g++", "-std=gnu++14")
        obj = tmp_path / (unit.name + ".o")
        subprocess.run([compiler, std, *MBED_NANO_FLAGS, f"-I{root / 'src'}", f"-I{lib / 'src'}", f"-I{stub}", "-c",
                        str(unit), "-o", str(obj)], check=True, capture_output=True)
        objs.append(str(obj))
    elf = tmp_path / "sketch.elf"
    res = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16",
                          "--specs=nosys.specs", "-Wl,--gc-sections", "-o", str(elf), *objs,
                          f"-L{archive.parent}", "-lEmbBERT_TFLM"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    nm = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    symbols = {line.split()[-1] for line in nm.splitlines()}
    assert {"embbert_tflm_add_batch_matmul", "embbert_tflm_init", "embbert_register_ops",
            "embbert_tflm_enable_profiling"} <= symbols
    assert not {"embbert_tflm_add_tanh", "embbert_tflm_add_conv_2d"} & symbols
    # a second run never writes into the library it made
    res = subprocess.run([sys.executable, str(tool), str(tree), str(lib)], capture_output=True, text=True)
    assert res.returncode == 1 and "not empty" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.skipif(not have("arm-none-eabi-g++"), reason="arm-none-eabi-gcc not installed")
def test_tflm_tool_refuses_what_it_cannot_build(tmp_path):
    tool = REPO / "micro_app" / "tools" / "tflm_arduino_library.py"
    tree = tmp_path / "tree"
    _fake_tflm_tree(tree)
    shutil.rmtree(tree / "third_party" / "cmsis_nn")
    res = subprocess.run([sys.executable, str(tool), str(tree), str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 1 and "OPTIMIZED_KERNEL_DIR=cmsis_nn" in res.stderr and not (tmp_path / "out").exists()
    res = subprocess.run([sys.executable, str(tool), str(tmp_path / "nope"), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "not a create_tflm_tree.py tree" in res.stderr
    _fake_tflm_tree(tree)
    (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.cc").write_text("this is not C++\n")
    res = subprocess.run([sys.executable, str(tool), str(tree), str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 1 and "did not compile" in res.stderr and "micro_interpreter.cc" in res.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
