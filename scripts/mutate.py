"""`make mutate`: mutation testing with mutmut over the modules whose mistakes cost most.

mutmut 3 finds the code it mutates under `src/` (or the project's root) and names each mutant after its
module path from there; this project keeps its package under `include/`. So the run happens in a staging
folder, `.mutmut/`, holding `src/retrain` (a copy of `include/retrain`), the tests and pyproject.toml, whose
`[tool.mutmut]` table names the modules to mutate and the unit tests that cover them. mutmut keeps its
results there between runs (it re-tests only what changed); `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutmut"
MUTMUT = Path(sys.executable).with_name("mutmut")


def stage(fresh: bool) -> None:
    if fresh:
        shutil.rmtree(STAGE, ignore_errors=True)
    (STAGE / "src").mkdir(parents=True, exist_ok=True)
    # Only what changed is copied again, so mutmut's own bookkeeping sees which functions to re-test.
    shutil.copytree(ROOT / "include" / "retrain", STAGE / "src" / "retrain", dirs_exist_ok=True)
    shutil.copytree(ROOT / "tests", STAGE / "tests", dirs_exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", STAGE / "pyproject.toml")


def results() -> dict[str, str]:
    """Each mutant's status, as mutmut records it."""
    shown = subprocess.run([str(MUTMUT), "export-cicd-stats"], cwd=STAGE, capture_output=True, text=True)
    listing = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=STAGE, capture_output=True, text=True)
    statuses = {}
    for line in listing.stdout.splitlines():
        name, _, status = line.strip().partition(": ")
        if "__mutmut_" in name:
            statuses[name] = status
    if shown.returncode == 0 and (STAGE / "mutants" / "mutmut-cicd-stats.json").exists():
        stats = json.loads((STAGE / "mutants" / "mutmut-cicd-stats.json").read_text())
        print(json.dumps(stats, indent=2))
    return statuses


def environment() -> tuple[dict[str, str], subprocess.Popen[str]]:
    """One S3 server for the whole run (each mutant's test session would start its own, which costs more
    than the tests), and one thread per numerical library: mutmut limits each session's CPU time, which
    threads spend several times faster than the clock."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import start_s3_server

    server, endpoint = start_s3_server()
    threads = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")
    return {**os.environ, **threads, "RETRAIN_TEST_S3_ENDPOINT": endpoint}, server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="forget earlier results and mutate everything again")
    parser.add_argument("--max-children", type=int, help="parallel test processes (default: the cores)")
    args = parser.parse_args()
    stage(args.fresh)
    command = [str(MUTMUT), "run"]
    if args.max_children:
        command += ["--max-children", str(args.max_children)]
    env, server = environment()
    try:
        subprocess.run(command, cwd=STAGE, env=env, check=False)
    finally:
        server.terminate()
    statuses = results()
    killed = sum(1 for s in statuses.values() if s in ("killed", "caught by type check"))
    total = len(statuses)
    print(f"\n{killed} of {total} mutants killed ({killed / max(total, 1):.1%})")
    for status in ("survived", "no tests", "timeout", "suspicious", "segfault"):
        for name in sorted(n for n, s in statuses.items() if s == status):
            print(f"  {status}: {name}")
    print(f"\nSee one: cd {STAGE.relative_to(ROOT)} && {MUTMUT} show NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main())
