"""How long ``import llmx_sync`` takes, beside ``import openai``, in this environment.

    python benchmarks/import_time.py [--runs N]

Each import runs in a fresh interpreter, N times; the figures are medians. "wall" is
``python -X importtime``'s cumulative time of the top-level imports (the interpreter's own
start-up not counted); "cpu" is the process's CPU time over the same import, which a busy
machine inflates much less. ``llmx_sync.Client`` is the package plus what the first use of
`Client` imports (requests, urllib3, ssl). Run it with the Python of the environment to
measure: with Jupyter installed, jsonschema loads rfc3987_syntax, which builds a grammar,
so an eager import of jsonschema costs seconds there. The script also lists the heavy
modules `import llmx_sync` leaves for their first use, and times ``llmx-sync --help``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import time

# Imported when first used, never by `import llmx_sync`.
LAZY = ("requests", "jsonschema", "rfc3987_syntax", "docstring_parser", "pydantic", "IPython", "llmx_sync.client",
        "llmx_sync.local", "llmx_sync.notebook", "llmx_sync.web", "llmx_sync.cli", "llmx_sync.testing")
CPU_PROBE = "import time; t = time.process_time(); import {module}; print(time.process_time() - t)"


def wall_ms(module: str) -> float:
    """-X importtime's figures of the top-level imports ``import module`` made (for
    ``llmx_sync.client``: the package, then the module the package left for later)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, check=True)
    top = re.escape(module.split(".")[0])
    times = [int(match.group(1)) for line in done.stderr.splitlines()
             if (match := re.match(rf"import time:\s*\d+ \|\s*(\d+) \| ({top}(\.\S+)?)$", line))]
    if not times:
        raise RuntimeError(f"no importtime line for {module}")
    return sum(times) / 1000


def cpu_ms(module: str) -> float:
    done = subprocess.run([sys.executable, "-c", CPU_PROBE.format(module=module)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout) * 1000


def measure(module: str, runs: int) -> tuple[float, float]:
    """(wall, cpu) medians in milliseconds."""
    return (statistics.median(wall_ms(module) for _ in range(runs)),
            statistics.median(cpu_ms(module) for _ in range(runs)))


def help_ms(runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "llmx_sync", "--help"], capture_output=True, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]} at {sys.executable}; medians of {args.runs} fresh interpreters")
    jupyter = importlib.util.find_spec("rfc3987_syntax") is not None
    print(f"rfc3987_syntax installed (as with Jupyter): {'yes' if jupyter else 'no'}\n")
    print(f"{'':22}{'wall ms':>9}{'cpu ms':>9}")
    figures = {}
    for label, module in (("import llmx_sync", "llmx_sync"), ("  + llmx_sync.Client", "llmx_sync.client"),
                          ("import openai", "openai"), ("import jsonschema", "jsonschema")):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            print(f"{label:22}not installed" + (" (pip install -e '.[bench]')" if module == "openai" else ""))
            continue
        figures[module] = measure(module, args.runs)
        print(f"{label:22}{figures[module][0]:9.1f}{figures[module][1]:9.1f}")
    if "openai" in figures:
        ours, client, theirs = figures["llmx_sync"], figures["llmx_sync.client"], figures["openai"]
        print(f"{'llmx_sync / openai':22}{ours[0] / theirs[0]:9.2f}{ours[1] / theirs[1]:9.2f}")
        print(f"{'  with Client':22}{client[0] / theirs[0]:9.2f}{client[1] / theirs[1]:9.2f}")

    probe = "import sys, llmx_sync; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe, *LAZY], capture_output=True, text=True,
                            check=True).stdout.split()
    print(f"\nleft for first use    {', '.join(m for m in LAZY if m not in loaded)}")
    if loaded:
        print(f"imported anyway       {', '.join(loaded)}")
    print(f"llmx-sync --help      {help_ms(max(3, args.runs // 3)):.1f} ms (wall time, interpreter start-up included)")


if __name__ == "__main__":
    main()
