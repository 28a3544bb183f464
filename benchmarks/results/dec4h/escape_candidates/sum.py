"""The summary table of docs/detection.md, "Detection v4.3": python sum.py NAME ... (run here)."""

import json
import os
import sys
from pathlib import Path

HEAD = ("cand       | choose str R/FPR  allFPR | report str R/FPR  allFPR | "
        "OT rec  FPR    new_fields drift  plain")


def row(name: str) -> str:
    cells = [f"{name:10s}"]
    for part in ("choose", "rep"):
        path = f"{name}_{part}.json"
        if os.path.exists(path):
            d = json.loads(Path(path).read_text())["enforced"]
            cells.append(f"{d['structured']['recall']:.3f} {100 * d['structured']['fpr']:.2f}%  "
                         f"{100 * d['all']['fpr']:.2f}%")
        else:
            cells.append(" " * 20)
    path = f"{name}_ot.json"
    if os.path.exists(path):
        d = json.loads(Path(path).read_text())
        cells.append(f"{d['recall_overall']['ALL anomalous']['any']:.3f} "
                     f"{100 * d['fpr_overall']['ALL normal']['any']:.2f}%  "
                     f"{d['recall_kind']['new_fields']['any']:.3f}  "
                     f"{100 * d['fpr_variant']['drift']['any']:.1f}%  "
                     f"{100 * d['fpr_variant']['plain']['any']:.2f}%")
    return " | ".join(cells)


if __name__ == "__main__":
    print(HEAD)
    for n in sys.argv[1:]:
        print(row(n))
