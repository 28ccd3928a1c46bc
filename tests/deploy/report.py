"""One PASS/FAIL line per check, shared by the tests/deploy scripts."""

from __future__ import annotations

RESULTS: list[bool] = []


def report(ok: bool, what: str, why: str = "") -> bool:
    RESULTS.append(ok)
    line = f"{'PASS' if ok else 'FAIL'} {what}"
    if why and not ok:
        line += f": {why}"
    print(line, flush=True)
    return ok


def exit_code() -> int:
    return 0 if all(RESULTS) else 1
