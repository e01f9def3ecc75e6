"""The README's library example runs and prints what the README says it prints."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_python_example_runs_and_prints_the_documented_values():
  text = README.read_text()
  block = re.search(r'```python\n(.*?)```', text, re.S).group(1)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(block, str(README), 'exec'), {'__name__': 'readme_example'})  # pylint: disable=exec-used
  printed = out.getvalue().split()
  # The values the README's comments promise: the Table 3 count and the logits' shape.
  assert printed[0] == '4922642'
  assert ' '.join(printed[1:]) == '(4, 10)'
  assert '# 4922642' in block
