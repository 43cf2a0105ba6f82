"""How long ``import llmx_sync`` takes, beside ``import openai``, in this environment.

    python benchmarks/import_time.py [--runs N]

Each figure is ``python -X importtime``'s cumulative time of the top-level import, in a
fresh interpreter each run (medians of N runs; the interpreter's own start-up is not
counted); ``llmx_sync.Client`` is the package plus what its first use imports (requests,
urllib3, ssl). Run it with the Python of the environment to measure: with Jupyter installed,
jsonschema loads rfc3987_syntax, which builds a grammar, so an eager import of jsonschema
costs seconds there. The script also lists the heavy modules `import llmx_sync` leaves for
later (they are imported when first used), and times ``llmx-sync --help``.
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
LAZY = ("jsonschema", "rfc3987_syntax", "docstring_parser", "pydantic", "IPython", "llmx_sync.local",
        "llmx_sync.notebook", "llmx_sync.web", "llmx_sync.cli", "llmx_sync.testing")


def import_ms(module: str) -> float:
    """Milliseconds ``import module`` takes in a fresh interpreter: the -X importtime
    figures of the top-level imports it made (for ``llmx_sync.client``: the package, then
    the module the package left for later)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, check=True)
    top = module.split(".")[0]
    times = [int(match.group(1)) for line in done.stderr.splitlines()
             if (match := re.match(rf"import time:\s*\d+ \|\s*(\d+) \| ({re.escape(top)}(\.\S+)?)$", line))]
    if not times:
        raise RuntimeError(f"no importtime line for {module}")
    return sum(times) / 1000


def median_ms(module: str, runs: int) -> tuple[float, float]:
    times = [import_ms(module) for _ in range(runs)]
    return statistics.median(times), min(times)


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
    ours, ours_min = median_ms("llmx_sync", args.runs)
    print(f"import llmx_sync     {ours:8.1f} ms   (min {ours_min:.1f})")
    client, client_min = median_ms("llmx_sync.client", args.runs)
    print(f"  + llmx_sync.Client {client:8.1f} ms   (min {client_min:.1f}; the first use, with the HTTP stack)")
    if importlib.util.find_spec("openai") is not None:
        theirs, theirs_min = median_ms("openai", args.runs)
        print(f"import openai        {theirs:8.1f} ms   (min {theirs_min:.1f})")
        print(f"llmx_sync / openai   {ours / theirs:8.2f}   (with Client: {client / theirs:.2f})")
    else:
        print("import openai        not installed (pip install -e '.[bench]')")
    jupyter = importlib.util.find_spec("rfc3987_syntax") is not None
    print(f"rfc3987_syntax installed (as with Jupyter): {'yes' if jupyter else 'no'}")
    if importlib.util.find_spec("jsonschema") is not None:
        print(f"import jsonschema    {median_ms('jsonschema', max(3, args.runs // 3))[0]:8.1f} ms   "
              "(what an eager import would add)")

    probe = "import sys, llmx_sync; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe, *LAZY], capture_output=True, text=True,
                            check=True).stdout.split()
    print(f"left for first use   {', '.join(m for m in LAZY if m not in loaded)}")
    if loaded:
        print(f"imported anyway      {', '.join(loaded)}")
    print(f"llmx-sync --help     {help_ms(max(3, args.runs // 3)):8.1f} ms   (wall time, interpreter start-up included)")


if __name__ == "__main__":
    main()
