"""``import potentia`` stays cheap: genlm-control and the processor module load on first use."""

import subprocess
import sys


def test_import_potentia_loads_no_interop_backend():
    code = (
        "import sys, potentia as pt; "
        "assert 'genlm.control' not in sys.modules, 'genlm-control imported'; "
        "assert 'potentia.interop.hf' not in sys.modules; "
        "assert 'from_genlm' in dir(pt.interop)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
