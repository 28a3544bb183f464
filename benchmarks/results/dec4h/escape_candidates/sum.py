import json, sys, os
names = sys.argv[1:]
print(f"{'cand':10s} | choose str R/FPR  allFPR | report str R/FPR  allFPR | OT rec  FPR    new_fields drift  plain")
for n in names:
    row = [f"{n:10s}"]
    for part in ("choose", "rep"):
        p = f"/tmp/esc/{n}_{part}.json"
        if os.path.exists(p):
            d = json.load(open(p))["enforced"]
            row.append(f"{d['structured']['recall']:.3f} {100*d['structured']['fpr']:.2f}%  {100*d['all']['fpr']:.2f}%")
        else:
            row.append(" " * 20)
    p = f"/tmp/esc/{n}_ot.json"
    if os.path.exists(p):
        d = json.load(open(p))
        row.append(f"{d['recall_overall']['ALL anomalous']['any']:.3f} {100*d['fpr_overall']['ALL normal']['any']:.2f}%  {d['recall_kind']['new_fields']['any']:.3f}  {100*d['fpr_variant']['drift']['any']:.1f}%  {100*d['fpr_variant']['plain']['any']:.2f}%")
    print(" | ".join(row))
