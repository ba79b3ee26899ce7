"""Generate ``docs/api.md`` from the numpydoc docstrings of the public API.

Every name in ``devito_perforad.__all__`` gets a section: its signature, its summary
and description, and its numpydoc sections (Parameters, Returns, Raises, Examples, ...)
as markdown. The examples are the docstrings' own, which pytest runs with the modules
(``--doctest-modules``); it leaves ``api.md`` itself out, not to run them twice.

Regenerate after changing a docstring (from anywhere)::

    python docs/make_api.py

``tests/test_notebooks.py::test_api_reference_is_up_to_date`` fails while ``api.md``
differs from what this script writes.
"""

import inspect
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
OUTPUT = DOCS / 'api.md'

HEADER = """\
# API reference

Generated from the docstrings by `python docs/make_api.py`; do not edit by hand
(`tests/test_notebooks.py` checks that this file is up to date). The examples are
doctests, run by `pytest`. For the method see [how-it-works.md](how-it-works.md), for
error messages [troubleshooting.md](troubleshooting.md).
"""

# numpydoc sections whose entries are ``name : type`` lines with indented descriptions
ENTRY_SECTIONS = {'Parameters', 'Other Parameters', 'Returns', 'Yields', 'Raises',
                  'Warns', 'Attributes'}


def _inline(text):
    """reST inline markup to markdown: ``code``, :role:`target`."""
    text = re.sub(r':(?:func|class|mod|meth|attr|data|exc):`~?([^`]+)`',
                  lambda m: f'`{m.group(1)}`', text)
    return re.sub(r'``([^`]+)``', r'`\1`', text)


def _sections(doc):
    """Split a numpydoc docstring into ``[(title or None, lines)]``."""
    lines = doc.splitlines()
    out, title, body, i = [], None, [], 0
    while i < len(lines):
        line = lines[i]
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ''
        if (line.strip() and underline and set(underline) == {'-'}
                and len(underline) == len(line.strip())):
            out.append((title, body))
            title, body = line.strip(), []
            i += 2
            continue
        body.append(line)
        i += 1
    out.append((title, body))
    return out


def _paragraphs(lines):
    """Free text: reST literal blocks (``::`` then indented) become fenced blocks."""
    out, text, i = [], [], 0

    def flush():
        out.extend(_inline('\n'.join(text)).split('\n') if text else [])
        text.clear()

    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith('::'):
            lead = line.rstrip()[:-1].rstrip()
            text.append((lead if lead.endswith(':') else lead + ':') if lead.strip()
                        else '')
            flush()
            block, i = [], i + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(' ')):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
            out += ['', '```text'] + [b[indent:] for b in block] + ['```', '']
            continue
        text.append(line)
        i += 1
    flush()
    return out


def _entries(title, lines):
    """``name : type`` entries with indented descriptions, as a markdown list.

    In Returns and Yields an entry without `` : `` is a type, not a name.
    """
    items = []
    for line in lines:
        if not line.strip():
            continue
        if not line.startswith(' '):
            name, colon, kind = line.partition(' : ')
            items.append([name.strip(), kind.strip(), bool(colon), []])
        elif items:
            items[-1][3].append(line.strip())
    out = []
    for name, kind, named, desc in items:
        if named or title not in ('Returns', 'Yields'):
            head = f'- `{name}`' + (f' (*{_inline(kind)}*)' if kind else '')
        else:
            head = f'- *{_inline(name)}*'
        out.append(head + (': ' + _inline(' '.join(desc)) if desc else ''))
    return out


def _examples(lines):
    """Doctest examples in a fenced block, with a blank line before the closing fence
    so that doctest does not read the fence as expected output."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return ['```python'] + lines + ['', '```']


def _signature(name, obj):
    """``name(args)``; for a class, its constructor, or its bases if it has none."""
    if inspect.isclass(obj):
        if obj.__init__ is object.__init__ or issubclass(obj, BaseException):
            bases = ', '.join(b.__name__ for b in obj.__bases__)
            return f'class {name}({bases})'
        return f'class {name}{inspect.signature(obj)}'
    return f'{name}{inspect.signature(obj)}'


def _methods(obj):
    """Public methods a class defines itself, with a docstring, in source order."""
    return [(n, m) for n, m in vars(obj).items()
            if not n.startswith('_') and inspect.isfunction(m) and m.__doc__]


def render_object(name, obj, level=2):
    """The markdown section of one public object (and of a class's methods)."""
    doc = inspect.getdoc(obj) or ''
    out = [f'{"#" * level} `{name}`', '', '```python', _signature(name, obj), '```', '']
    for title, lines in _sections(doc):
        if title is None:
            out += _paragraphs(lines)
        elif title in ENTRY_SECTIONS:
            out += [f'**{title}**', ''] + _entries(title, lines)
        elif title == 'Examples' and any(ln.lstrip().startswith('>>>') for ln in lines):
            out += [f'**{title}**', ''] + _examples(lines)
        else:
            out += [f'**{title}**', ''] + _paragraphs(lines)
        out.append('')
    if inspect.isclass(obj):
        for method, func in _methods(obj):
            out += render_object(f'{name}.{method}', func, level + 1)
    return out


def _anchor(name):
    """GitHub's anchor of the heading `` `name` ``."""
    return re.sub(r'[^\w-]', '', name.lower())


def render():
    """The full text of ``docs/api.md``."""
    sys.path.insert(0, str(ROOT))
    try:
        import devito_perforad
    finally:
        sys.path.remove(str(ROOT))
    from devito_perforad import seismic, shots
    sections = [(seismic, 'Derived solvers'), (shots, 'Shots on Dask')]
    extra = [f'{m.__name__.split(".")[-1]}.{n}' for m, _ in sections for n in m.__all__]
    out = [HEADER, '## Contents', '']
    out += [f'- [`{n}`](#{_anchor(n)})' for n in devito_perforad.__all__ + extra]
    out += ['', '## Package overview', '']
    out += _paragraphs((inspect.getdoc(devito_perforad) or '').splitlines()) + ['']
    for name in devito_perforad.__all__:
        out += render_object(name, getattr(devito_perforad, name))
    for module, title in sections:
        short = module.__name__.split('.')[-1]
        out += [f'## {title}: `{module.__name__}`', '']
        out += _paragraphs((inspect.getdoc(module) or '').splitlines()) + ['']
        for name in module.__all__:
            out += render_object(f'{short}.{name}', getattr(module, name), level=3)
    text = '\n'.join(out)
    text = re.sub(r'\n{3,}', '\n\n', text)
    return text.rstrip('\n') + '\n'


def main():
    OUTPUT.write_text(render())
    print(f'wrote {OUTPUT}')


if __name__ == '__main__':
    main()
