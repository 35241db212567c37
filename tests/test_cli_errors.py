"""Bad input to the CLIs gives one line ``error: <file>: <problem>`` on stderr and exit status 2.

Datasets registered in the test process are invisible to a ``python -m s2vnet.data.slice_cache``
subprocess, so a driver script registers each case's dataset and calls ``slice_cache.main`` the way
the module's ``__main__`` does (``sys.exit(main(argv))``). Importing torch and Detectron2 costs a few
seconds, so the driver imports them once and runs every case in a forked child process of its own,
with its own stderr file and exit status. Only the missing-config case runs the real ``python -m``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from s2vnet.errors import InputError, cli_errors

DRIVER = textwrap.dedent(
    '''
    """Run each case of cases.json in a forked child: register its dataset, then the slice-cache CLI."""
    import atexit
    import gc
    import json
    import os
    import sys
    import traceback
    from pathlib import Path

    from s2vnet.data.datasets.register import register_volume_dataset
    from s2vnet.data.slice_cache import main
    from s2vnet.errors import cli_errors


    @cli_errors
    def run(case):
        registration = case.get("register")
        if registration:
            register_volume_dataset(
                registration["name"], cases=[tuple(pair) for pair in registration["cases"]],
                class_names=registration["class_names"], modality=registration["modality"])
        return main(case["argv"])


    def run_as_process(case):
        """``sys.exit(run(case))`` as the interpreter runs it, minus the slow teardown of torch's modules."""
        try:
            code = run(case)
        except SystemExit as exit_:
            code = exit_.code
        except BaseException:
            traceback.print_exc()
            code = 1
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
        gc.collect()  # pending finalizers (progress bars, files) run as they would at exit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


    cases = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    returncodes = {}
    gc.freeze()  # the children need not scan (and copy) the parent's objects
    for key, case in cases.items():
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for fd, stream in ((1, "stdout"), (2, "stderr")):
                handle = os.open(out / f"{key}.{stream}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(handle, fd)
                os.close(handle)
            run_as_process(case)
        _, status = os.waitpid(pid, 0)
        returncodes[key] = os.waitstatus_to_exitcode(status)
    (out / "returncodes.json").write_text(json.dumps(returncodes))
    '''
)


def _write(path: Path, array: np.ndarray, spacing=None) -> str:
    image = sitk.GetImageFromArray(array)
    if spacing is not None:
        image.SetSpacing(tuple(reversed(spacing)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return str(path)


class CliRuns:
    """Inputs, expectations and results of every CLI run of this module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.cases: dict[str, dict] = {}  # driver input
        self.expected: dict[str, tuple[str, list[str]]] = {}  # key -> (file or dataset named, key words)
        self.returncodes: dict[str, int] = {}

    def add(
        self, key, expected_source=None, keywords=(), *, cases=None, modality="CT", class_names=("liver",), argv=None
    ):
        name = f"ds_{key}"
        registration = None
        if cases is not None:
            registration = {"name": name, "cases": cases, "class_names": list(class_names), "modality": modality}
        argv = argv or [f"--dataset={name}", "INPUT.VOLUME.CACHE_DIR", str(self.cache)]
        self.cases[key] = {"register": registration, "argv": argv}
        if expected_source is not None:
            self.expected[key] = (str(expected_source), list(keywords))

    def stderr(self, key) -> str:
        return (self.root / "out" / f"{key}.stderr").read_text(encoding="utf-8", errors="replace")

    def stdout(self, key) -> str:
        return (self.root / "out" / f"{key}.stdout").read_text(encoding="utf-8", errors="replace")


def _env(root: Path) -> dict[str, str]:
    (root / "d2").mkdir(exist_ok=True)
    return dict(os.environ, DETECTRON2_DATASETS=str(root / "d2"), S2VNET_DEMO_DATA=str(root / "no_demo"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> CliRuns:
    root = tmp_path_factory.mktemp("cli")
    runs = CliRuns(root)
    img, lbl = root / "img", root / "lbl"
    shape = (3, 4, 5)
    ramp = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    good_label = np.zeros(shape, np.uint8)
    good_label[1, 1:3, 1:4] = 1
    good = (_write(img / "good.nii.gz", ramp), _write(lbl / "good.nii.gz", good_label))

    runs.add("ok", cases=[good])

    runs.add(
        "missing_image", img / "missing.nii.gz", ["does not exist"], cases=[(str(img / "missing.nii.gz"), good[1])]
    )

    garbage = img / "garbage.nii.gz"
    garbage.write_bytes(b"this is not a NIfTI file\x00\xff" * 16)
    runs.add("unreadable", garbage, ["cannot be read"], cases=[(str(garbage), good[1])])

    flat = _write(img / "flat.nii.gz", np.zeros((4, 5), np.int16))
    runs.add("image_2d", flat, ["2D", "expected a 3D volume"], cases=[(flat, good[1])])

    off_grid = _write(lbl / "off_grid.nii.gz", good_label, spacing=(2.0, 1.0, 1.0))
    off_image = _write(img / "off_grid.nii.gz", ramp)
    runs.add("grid_mismatch", off_grid, ["not on its image's grid", "spacing"], cases=[good, (off_image, off_grid)])

    unlisted = good_label.copy()
    unlisted[2, 0, 0] = 7
    unlisted_path = _write(lbl / "unlisted.nii.gz", unlisted)
    runs.add(
        "unlisted_label",
        unlisted_path,
        ["[7]", "not in the class list"],
        cases=[(_write(img / "unlisted.nii.gz", ramp), unlisted_path)],
    )

    runs.add("no_cases", "ds_no_cases", ["no cases"], cases=[])

    nan = ramp.astype(np.float32)
    nan[1, 2, 3] = np.nan
    nan_path = _write(img / "nan.mha", nan)  # ITK's NIfTI reader would turn the NaN into 0
    runs.add("nan", nan_path, ["NaN"], cases=[good, (nan_path, _write(lbl / "nan.nii.gz", good_label))])

    runs.add(
        "unknown_modality", "ds_unknown_modality", ["unknown modality 'PET'", "CT, MRI"], cases=[good], modality="PET"
    )

    runs.add(
        "unknown_dataset",
        "nope",
        ["no such registered dataset"],
        argv=["--dataset=nope", "INPUT.VOLUME.CACHE_DIR", str(runs.cache)],
    )

    runs.add(
        "bad_override",
        "command-line overrides",
        ["invalid config", "INPUT.VOLUME.NOPE"],
        argv=["--dataset=ds_ok", "INPUT.VOLUME.NOPE", "1"],
    )

    bad_yaml = root / "configs" / "bad.yaml"
    bad_yaml.parent.mkdir()
    bad_yaml.write_text("INPUT:\n  VOLUME:\n    CT_WINDOWS: [-100, 200]\n")
    runs.add(
        "bad_config_key",
        bad_yaml,
        ["invalid config", "CT_WINDOWS"],
        argv=["--config-file", str(bad_yaml), "--dataset=ds_ok"],
    )

    runs.add(
        "trailing_overrides",
        cases=[good],
        argv=["--dataset", "ds_trailing_overrides", "INPUT.VOLUME.CACHE_DIR", str(root / "cache_trailing")],
    )

    (root / "out").mkdir()
    (root / "cases.json").write_text(json.dumps(runs.cases))
    (root / "driver.py").write_text(DRIVER)

    missing_cfg = root / "configs" / "missing.yaml"
    runs.add("missing_config", missing_cfg, ["no such config file"])
    real_cli = subprocess.Popen(
        [sys.executable, "-m", "s2vnet.data.slice_cache", "--config-file", str(missing_cfg), "--dataset=ds_ok"],
        cwd=root,
        env=_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
    )
    driver = subprocess.run(
        [sys.executable, str(root / "driver.py"), str(root / "cases.json"), str(root / "out")],
        cwd=root,
        env=_env(root),
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    real_out, real_err = real_cli.communicate(timeout=300)

    assert driver.returncode == 0, driver.stderr
    runs.returncodes = json.loads((root / "out" / "returncodes.json").read_text())
    runs.returncodes["missing_config"] = real_cli.returncode
    (root / "out" / "missing_config.stdout").write_text(real_out, encoding="utf-8")
    (root / "out" / "missing_config.stderr").write_text(real_err, encoding="utf-8")
    return runs


ERROR_CASES = [
    "missing_image",
    "unreadable",
    "image_2d",
    "grid_mismatch",
    "unlisted_label",
    "no_cases",
    "nan",
    "unknown_modality",
    "unknown_dataset",
    "missing_config",
    "bad_override",
    "bad_config_key",
]


@pytest.mark.parametrize("key", ERROR_CASES)
def test_bad_input_gives_one_line_error(runs, key):
    stderr = runs.stderr(key)
    source, keywords = runs.expected[key]
    assert "Traceback" not in stderr, stderr
    assert runs.returncodes[key] == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith(f"error: {source}: "), last
    for word in keywords:
        assert word in last, last
    assert sum(line.startswith("error:") for line in lines) == 1, stderr


def test_good_dataset_builds(runs):
    assert runs.returncodes["ok"] == 0, runs.stderr("ok")
    assert f"ds_ok: 1 cases, 3 slices in {runs.cache / 'ds_ok'}" in runs.stdout("ok")
    case = runs.cache / "ds_ok" / "good"
    assert all((case / f"{a}.npy").exists() for a in ("image", "label", "presence"))
    assert np.load(case / "image.npy").shape == (3, 4, 5)


@pytest.mark.parametrize(("key", "bad_case"), [("nan", "nan"), ("grid_mismatch", "off_grid")])
def test_failed_case_leaves_nothing_half_written(runs, key, bad_case):
    folder = runs.cache / f"ds_{key}"
    assert runs.returncodes[key] == 2
    # the good case before it is complete and recorded; the failing one left no arrays behind
    assert (folder / "good" / "image.npy").exists()
    assert not (folder / bad_case / "image.npy").exists()
    assert not (folder / bad_case / "label.npy").exists()
    assert [p.name for p in folder.rglob(".tmp-*")] == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["cases"]) == ["good"]


def test_registration_error_leaves_no_cache(runs):
    assert not (runs.cache / "ds_unknown_modality").exists()
    assert not (runs.cache / "ds_no_cases").exists()


def test_overrides_after_dataset_names_are_config_overrides(runs):
    """``--dataset NAME KEY VALUE``: the trailing KEY VALUE must override the config, not name datasets."""
    stderr = runs.stderr("trailing_overrides")
    assert runs.returncodes["trailing_overrides"] == 0, stderr
    assert (runs.root / "cache_trailing" / "ds_trailing_overrides" / "good" / "image.npy").exists()


# ---------------------------------------------------------------- the wrapper itself (in process)


def test_cli_errors_wrapper(capsys):
    @cli_errors
    def failing(path):
        raise InputError(path, "is broken")

    @cli_errors
    def fine(value):
        return value

    with pytest.raises(SystemExit) as info:
        failing("/data/scan.nii.gz")
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: /data/scan.nii.gz: is broken\n"
    assert fine(0) == 0
    assert fine.__name__ == "fine"


def test_cli_errors_lets_other_exceptions_through():
    @cli_errors
    def buggy():
        raise KeyError("a programming error keeps its traceback")

    with pytest.raises(KeyError):
        buggy()
