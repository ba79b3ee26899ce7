"""The README's Python examples run as written and check themselves; ``help()`` of
every public name is complete.

Every ```python block of README.md is executed in a fresh namespace. Each is a
self-checking example: it compares a derived gradient with a central finite difference
and leaves their relative difference in ``rel_error``, which must be small.
"""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import devito_perforad
from devito_perforad import seismic, shots

README = Path(__file__).resolve().parents[1] / 'README.md'
BLOCKS = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2, 'the quick start and the seismic example'


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_example_matches_finite_differences(index):
    scope = {'__name__': f'readme_block_{index}'}
    exec(compile(BLOCKS[index], f'{README}:block{index}', 'exec'), scope)
    assert 'rel_error' in scope, 'a README example must check itself (rel_error)'
    rel_error = scope['rel_error']
    assert np.isfinite(rel_error) and rel_error < 1e-6, rel_error


def _sections(obj):
    doc = inspect.getdoc(obj) or ''
    lines = doc.splitlines()
    return {line.strip() for line, under in zip(lines, lines[1:], strict=False)
            if under.strip() and set(under.strip()) == {'-'}}


@pytest.mark.parametrize('name', devito_perforad.__all__ + [
    f'{m.__name__.split(".")[-1]}.{n}' for m in (seismic, shots) for n in m.__all__])
def test_help_of_every_public_name(name):
    """``help()`` shows Parameters, Returns, Raises and an example (a class: its
    Parameters, Raises and an example; its public methods their Parameters and
    Returns)."""
    obj = devito_perforad
    for part in name.split('.'):
        obj = getattr(obj, part)
    if not inspect.isclass(obj):
        assert {'Parameters', 'Returns', 'Raises', 'Examples'} <= _sections(obj), name
        return
    expected = {'Parameters', 'Examples'}
    if not issubclass(obj, Exception):
        expected.add('Raises')
    assert expected <= _sections(obj), name
    for method, member in vars(obj).items():
        if inspect.isfunction(member) and not method.startswith('_'):
            assert {'Parameters', 'Returns'} <= _sections(member), f'{name}.{method}'
