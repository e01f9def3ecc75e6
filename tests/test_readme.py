"""The README's library examples run and print what their comments say they print.

Every ```python block of README.md runs in a fresh process with 8 fake CPU devices (the sharding example
places a model on a 4 x 2 mesh); a `print(...)  # value` line promises the printed line `value`.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'


def _blocks() -> list[str]:
  return re.findall(r'```python\n(.*?)```', README.read_text(), re.DOTALL)


def _promised(block: str) -> list[str]:
  return [m.group(1).strip() for m in re.finditer(r'^[ \t]*print\(.*\)[ \t]+# (.+)$', block, re.MULTILINE)]


def _run(block: str) -> list[str]:
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=8',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''),
  )
  proc = subprocess.run(
    [sys.executable, '-c', block],
    env=env,
    cwd=str(ROOT),
    capture_output=True,
    text=True,
    timeout=1200,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def test_the_library_example_prints_the_table_3_count():
  first = _blocks()[0]
  assert '# 4922642' in first  # the Table 3 count of "LN HyperLSTM 1000"
  printed = _run(first)
  assert printed == _promised(first)
  assert '4922642' in printed and '(4, 10)' in printed


@pytest.mark.parametrize('index', range(1, len(_blocks())))
def test_the_other_examples_print_what_they_promise(index):
  blocks = _blocks()
  promised = _promised(blocks[index])
  assert promised, 'each example promises at least one printed value'
  assert _run(blocks[index]) == promised
