"""CLI output is one line (issue #12 item 10)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from synthetic import REPO

JIT_NOTICE = "`torch.jit.script` is deprecated"


def _python(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


# ---------------------------------------------------------------- 10. one line


OTHER_WARNINGS = textwrap.dedent('''
    import warnings
    import s2vnet
    warnings.warn_explicit("`torch.jit.script` is deprecated. Again.", FutureWarning, "_script.py", 1, module="torch.jit._script")
    warnings.warn_explicit("`torch.jit.trace` changes", FutureWarning, "_script.py", 2, module="torch.jit._script")
    warnings.warn_explicit("`torch.jit.script` is deprecated", FutureWarning, "mine.py", 3, module="mypackage")
''')


def test_importing_s2vnet_prints_nothing_and_only_the_jit_notice_is_silenced(tmp_path):
    result = _python("-c", OTHER_WARNINGS, cwd=tmp_path)  # outside pytest, whose own filters would hide them
    assert result.returncode == 0
    assert result.stderr.splitlines() == [  # nothing from the import itself
        "_script.py:2: FutureWarning: `torch.jit.trace` changes",
        "mine.py:3: FutureWarning: `torch.jit.script` is deprecated"]


def test_a_cli_error_is_the_only_line_on_stderr(tmp_path):
    result = _python("-m", "s2vnet.predict", "--config-file", "missing.yaml", "--weights", "w.pth", "--input", "x.nii.gz",
                     "--output", "seg.nii.gz", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: missing.yaml: no such config file"]


def test_train_net_config_error_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("MODEL:\n  DEVICE: [cpu\n")
    result = _python(str(REPO / "train_net.py"), "--config-file", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: bad.yaml: is not valid YAML at line 3, column 1: expected ',' or ']', "
                                          "but got '<stream end>'"]
