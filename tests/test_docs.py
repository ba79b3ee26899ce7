"""The README's Python examples run as written."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_quick_start_runs():
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)
    assert blocks
    for code in blocks:
        scope = {}
        exec(compile(code, str(README), 'exec'), scope)
    assert np.linalg.norm(scope['mb'].data) > 0
