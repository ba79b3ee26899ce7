"""The notebooks run top to bottom, and the generated docs are up to date.

* every notebook in ``notebooks/`` is executed in a fresh Jupyter kernel (nbclient and
  ipykernel, the ``test`` extra), alternately from ``notebooks/`` and from the
  repository root, and must be committed with its outputs cleared;
* ``docs/api.md`` is what ``docs/make_api.py`` generates from the docstrings;
* ``docs/troubleshooting.md`` lists every ``AdjointError`` raised in the package, and
  every message phrase it quotes still occurs in the source.
"""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
DOCS = ROOT / 'docs'
TIMEOUT = 600  # seconds per cell; each notebook takes well under a minute


def _cwd(index):
    """Run every other notebook from the repository root, the rest from notebooks/."""
    return ROOT if index % 2 else ROOT / 'notebooks'


# in the slow run, for the default run's time: the elastic ones (each compiles several
# elastic Operators), those whose scripts run in the default run (acoustic_adjoint.py,
# fwi.py, nonselfadjoint.py), and the performance one (its timings)
SLOW = {'02_acoustic_adjoint', '03_fwi', '04_nonselfadjoint', '05_performance',
        '06_elastic', '07_elastic_fwi'}


@pytest.mark.parametrize('index', [
    pytest.param(i, marks=pytest.mark.slow if p.stem in SLOW else ())
    for i, p in enumerate(NOTEBOOKS)], ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(index):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    pytest.importorskip('ipykernel')
    path = NOTEBOOKS[index]
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name='python3',
                                     resources={'metadata': {'path': str(_cwd(index))}})
    client.execute()  # raises CellExecutionError, with the cell and traceback
    errors = [o for c in nb.cells for o in c.get('outputs', [])
              if o.get('output_type') == 'error']
    assert not errors


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_stripped(path):
    nbformat = pytest.importorskip('nbformat')
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == 'code'
             and (c.get('outputs') or c.get('execution_count') is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace {path}`")


# -- docs/api.md ----------------------------------------------------------------------

def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_up_to_date():
    expected = _load(DOCS / 'make_api.py').render()
    assert (DOCS / 'api.md').read_text() == expected, \
        "docs/api.md is out of date: run `python docs/make_api.py`"


def test_api_reference_covers_the_public_api():
    import devito_perforad
    text = (DOCS / 'api.md').read_text()
    for name in devito_perforad.__all__:
        assert f'## `{name}`' in text, name


# -- docs/troubleshooting.md ----------------------------------------------------------

def _template(node):
    """A message as text, each formatted value replaced by NUL."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return ''.join(v.value if isinstance(v, ast.Constant) else '\0'
                       for v in node.values)
    return '\0'


def adjoint_error_messages():
    """``{file:line: message template}`` of every ``raise AdjointError(msg)`` and
    ``raise located(eq, field, msg)`` in the package."""
    out = {}
    for path in sorted((ROOT / 'devito_perforad').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func, args = node.exc.func, node.exc.args
            name = getattr(func, 'id', getattr(func, 'attr', None))
            if name in ('AdjointError', 'BufferSizeError') and args:
                out[f'{path.name}:{node.lineno}'] = _template(args[0])
            elif name == 'located' and len(args) >= 3:
                out[f'{path.name}:{node.lineno}'] = _template(args[2])
    return out


def documented_phrases():
    """The ``` `` phrase `` ``` spans of every ``**Message contains:**`` line."""
    lines = (DOCS / 'troubleshooting.md').read_text().splitlines()
    return [phrase for line in lines if line.startswith('**Message contains:**')
            for phrase in re.findall(r'`` (.+?) ``', line)]


def test_performance_doc_is_up_to_date():
    """Every figure of docs/performance.md is written from benchmarks/results/."""
    make = _load(DOCS / 'make_performance.py')
    text = (DOCS / 'performance.md').read_text()
    assert text == make.render(text), \
        "docs/performance.md disagrees with benchmarks/results/: run `python " \
        "docs/make_performance.py`"
    keys = {key for key, _, _ in make.BLOCK.findall(text)}
    assert keys == set(make.BLOCKS), "a generated block is missing from the doc"


def test_troubleshooting_phrases_occur_in_the_source():
    messages = adjoint_error_messages()
    phrases = documented_phrases()
    assert len(phrases) >= 20
    stale = [p for p in phrases if not any(p in m for m in messages.values())]
    assert not stale, f"quoted in docs/troubleshooting.md but not in any message: {stale}"


def test_troubleshooting_lists_every_adjoint_error():
    messages = adjoint_error_messages()
    assert len(messages) >= 20
    phrases = documented_phrases()
    missing = {where: m.replace('\0', '{...}') for where, m in messages.items()
               if m.strip('\0') and not any(p in m for p in phrases)}
    assert not missing, ("AdjointErrors not documented in docs/troubleshooting.md "
                         f"(add a '**Message contains:** `` phrase ``' entry): {missing}")


# -- docs/how-it-works.md -------------------------------------------------------------

def test_how_it_works_figure_exists():
    """The figure is committed (``python docs/make_figure.py`` draws it)."""
    text = (DOCS / 'how-it-works.md').read_text()
    images = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
    assert images
    for image in images:
        png = DOCS / image
        assert png.is_file() and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', image
