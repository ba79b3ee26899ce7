"""The benchmark harness runs end to end (``benchmarks/run.py --quick``: tiny sizes, one
repeat) and writes its tables and plots. Timings are not asserted."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_harness(tmp_path):
    proc = subprocess.run([sys.executable, 'benchmarks/run.py', '--quick', '--out',
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ['results', 'results_paper']:
        table = (tmp_path / f'{name}.md').read_text()
        for case in ['primal', 'derived adjoint', 'scatter adjoint']:
            assert f'| {case}' in table or f' {case} |' in table, (name, case, table)
        if name == 'results':  # JAX and deepwave: measured, or skipped with a note
            for peer in ['JAX gradient', 'deepwave gradient']:
                assert f'| {peer} |' in table or f'- {peer}: not measured' in table
        for plot in ['', '_threads', '_compile', '_memory']:
            png = tmp_path / f'{name}{plot}.png'
            assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', png
