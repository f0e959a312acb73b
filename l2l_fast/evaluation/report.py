"""`l2l-fast report`: one self-contained Markdown report (with its PNGs and CSVs)
from a results folder written by `l2l-fast eval` or benchmarks/studies/quality.py.

results.json:
    {"title": str, "notes": [str],
     "tables": [{"name": "inpaint:3", "rows": [{"method": str, "metrics": {...}}],
                 "grid": "grid.png", "curves": "curves.png", "tsne": "tsne.png"}],
     "ablation": {"name": str, "rows": [...]}  (optional)}
"""
from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path

from ..training.files import write_text
from .generation import BETTER, COLUMNS
from .neighbours import BASELINE, flag_lines


def _cell(value) -> str:
    if value is None:
        return "skipped"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def times_table(results: dict) -> list[str]:
    """Seconds per stage: the shared stages, then each row's."""
    lines = []
    if results.get("times"):
        lines += ["Time per stage (s):", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in results["times"].items()]
        lines.append("")
    for table in results.get("tables", []):
        rows = [r for r in table["rows"] if r.get("times")]
        if not rows:
            continue
        stages = list(rows[0]["times"])
        lines += [f"Time per model and stage, {table['name']} (s; images/s of generation + features):", "",
                  "| method | " + " | ".join(stages) + " |", "|" + "---|" * (len(stages) + 1)]
        lines += [f"| {r['method']} | " + " | ".join(f"{r['times'].get(s, 0.0):.2f}" for s in stages) + " |"
                  for r in rows]
        lines.append("")
    return lines


# KID and the metrics with no network, in a second table: (column, better)
MORE = (("KID_R", "↓"), ("MSE_hole_R", "↓"), ("PSNR_hole_R", "↑"), ("SSIM_R", "↑"),
        ("KID_F", "↑"), ("MSE_hole_F", "↑"), ("PSNR_hole_F", "↓"), ("SSIM_F", "↓"))


def _cell_more(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else _cell(value)


def markdown_table(rows: list[dict], columns=None) -> str:
    columns = columns or [(c, BETTER[c]) for c in COLUMNS]
    header = "| method | " + " | ".join(f"{c}{better}" for c, better in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    cell = _cell if columns[0][0] in COLUMNS else _cell_more
    for row in rows:
        lines.append(f"| {row['method']} | " + " | ".join(cell(row["metrics"].get(c, "")) for c, _ in columns) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> Path:
    text = StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["method", *COLUMNS])
    for row in rows:
        writer.writerow([row["method"], *(row["metrics"].get(c, "") for c in COLUMNS)])
    return write_text(text.getvalue(), path)


def write_report(folder, out=None) -> Path:
    """Write report.md (and one CSV per table) next to results.json in `folder`."""
    folder = Path(folder)
    results_path = folder / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: run `l2l-fast eval` or benchmarks/studies/quality.py first")
    results = json.loads(results_path.read_text())
    lines = [f"# {results.get('title', 'Unlearning report')}", ""]
    lines += [f"- {note}" for note in results.get("notes", [])] + [""]
    if results.get("config"):
        import yaml

        lines += ["Configuration:", "", "```yaml", yaml.safe_dump(results["config"], sort_keys=False).rstrip(),
                  "```", ""]
    tables = list(results.get("tables", []))
    names = results.get("class_names") or {}  # label -> class name, where the data has names
    if results.get("ablation"):
        tables.append(results["ablation"])
    for table in tables:
        name = table["name"]
        slug = name.replace(":", "_").replace(" ", "_").replace("=", "")
        lines += [f"## {name}", "", markdown_table(table["rows"]), ""]
        more = [c for c in MORE if any(c[0] in r["metrics"] for r in table["rows"])]
        if more:
            lines += ["KID, and the hole's MSE / PSNR and the completion's SSIM (no network):", "",
                      markdown_table(table["rows"], more), ""]
        csv_path = write_csv(folder / f"table_{slug}.csv", table["rows"])
        lines += [f"CSV: [{csv_path.name}]({csv_path.name})", ""]
        per_class = [r for r in table["rows"] if "per_class_F" in r["metrics"]]
        if per_class:
            classes = sorted({*per_class[0]["metrics"]["per_class_R"], *per_class[0]["metrics"]["per_class_F"]}, key=int)
            lines += ["Per-class classifier accuracy on generated images:", "",
                      "| method | " + " | ".join(names.get(c, c) for c in classes) + " |",
                      "|" + "---|" * (len(classes) + 1)]
            for row in per_class:
                acc = {**row["metrics"]["per_class_R"], **row["metrics"]["per_class_F"]}
                lines.append(f"| {row['method']} | " + " | ".join(f"{acc[c]:.2f}" for c in classes) + " |")
            lines.append("")
        lines += flag_lines(table["rows"], baseline=table.get("baseline", BASELINE))
        for key, title in (("grid", "Examples (columns: ground truth, input, then each method)"),
                           ("curves", "Loss curves"), ("tsne", table.get("tsne_title", "T-SNE of classifier embeddings"))):
            if table.get(key):
                lines += [f"{title}:", "", f"![{title}]({table[key]})", ""]
        skipped = {k: v for r in table["rows"] for k, v in r.get("skipped", {}).items()}
        if skipped:
            lines += ["Skipped metrics:", ""] + [f"- {k}: {v}" for k, v in skipped.items()] + [""]
    if results.get("networks"):
        lines += ["Feature networks:", ""] + [
            f"- {kind}: {n['network']}" + (f", file {n['file']}, sha256 {n['sha256']}" if n.get("sha256") else "")
            for kind, n in results["networks"].items()] + [""]
    lines += times_table(results)
    out = Path(out) if out else folder / "report.md"
    return write_text("\n".join(lines), out)
