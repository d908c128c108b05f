"""Figures for the analysis reports (one function per plot) and a self-contained interactive scatter in HTML.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot, so no global figure state is touched.
Each task keeps one colour in every plot (tab10, indexed by registry id).
"""

from __future__ import annotations

import html
import json

import numpy as np
from matplotlib.figure import Figure

from instructir.analysis.labelled import task_names_for

_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def task_colour(task_id: int) -> str:
    """The colour of a registry task id in every plot."""
    return _PALETTE[int(task_id) % len(_PALETTE)]


def task_scatter(points: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """2-D points coloured by task, with a legend and UMAP axis labels."""
    fig = Figure(figsize=(9, 7))
    ax = fig.subplots()
    size = 3 if len(points) > 5_000 else 8
    for task in np.unique(labels):
        chosen = labels == task
        ax.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=size,
            alpha=0.5,
            color=task_colour(task),
            label=f"{task_names_for([task])[0]} ({int(chosen.sum()):,})",
            linewidths=0,
        )
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title)
    ax.legend(title="task", markerscale=3, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def similarity_heatmap(matrix: np.ndarray, names: list[str], title: str) -> Figure:
    """A square similarity matrix with its values written in the cells."""
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis")
    _annotate(ax, matrix, matrix < (matrix.min() + matrix.max()) / 2)
    _label_axes(ax, names, "task", "task")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="cosine similarity")
    return fig


def confusion_heatmap(counts: np.ndarray, names: list[str], title: str) -> Figure:
    """A confusion matrix shown as the share of each row (given task) per predicted task."""
    shares = counts / counts.sum(1, keepdims=True).clip(min=1)
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    _annotate(ax, shares, shares > 0.5)
    _label_axes(ax, names, "predicted task", "given task")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the given task's requests")
    return fig


def length_histogram(lengths: dict[str, np.ndarray]) -> Figure:
    """Request length in words, one outlined histogram per corpus (share of requests per bin)."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    longest = max(int(np.percentile(values, 99.5)) for values in lengths.values())
    bins = np.arange(0, longest + 2) - 0.5
    for name, values in lengths.items():
        weights = np.full(len(values), 1.0 / max(len(values), 1))
        ax.hist(np.clip(values, 0, longest), bins=bins, weights=weights, histtype="step", linewidth=1.8, label=name)
    ax.set_xlabel(f"request length (words; longer than {longest} counted at {longest})")
    ax.set_ylabel("share of requests")
    ax.set_title("Request length")
    ax.legend(title="corpus")
    return fig


def per_task_bars(values: dict[str, dict[str, float]], metric: str) -> Figure:
    """Grouped bars of one metric per task, one bar colour per corpus."""
    corpora = list(values)
    tasks = list(dict.fromkeys(task for per_task in values.values() for task in per_task))
    width = 0.8 / len(corpora)
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    positions = np.arange(len(tasks))
    for slot, corpus in enumerate(corpora):
        heights = [values[corpus].get(task, np.nan) for task in tasks]
        ax.bar(positions + slot * width - 0.4 + width / 2, heights, width, label=corpus)
    ax.set_xticks(positions, tasks, rotation=30, ha="right")
    ax.set_xlabel("task")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per task")
    ax.legend(title="corpus")
    return fig


def divergence_curve(x: np.ndarray, y: np.ndarray, names: tuple[str, str], score: float) -> Figure:
    """The MAUVE divergence frontier: exp(-s KL(Q|R)) against exp(-s KL(P|R)) over the mixtures R."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.fill_between(x, y, alpha=0.2)
    ax.plot(x, y, marker=".", markersize=3)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"exp(-s KL(Q || R))   Q = {names[1]}")
    ax.set_ylabel(f"exp(-s KL(P || R))   P = {names[0]}")
    ax.set_title(f"Divergence curve (MAUVE = area = {score:.3f})")
    return fig


def interactive_scatter(
    points: np.ndarray, labels: np.ndarray, texts: list[str], title: str, element_id: str = "task-map"
) -> str:
    """A self-contained canvas scatter (no external scripts): hover shows a point's task and text.

    Clicking a legend entry hides or shows that task.
    """
    span = (points.max(0) - points.min(0)).clip(min=1e-9)
    scaled = ((points - points.min(0)) / span).round(4)
    tasks = [int(task) for task in np.unique(labels)]
    data = {
        "x": scaled[:, 0].tolist(),
        "y": scaled[:, 1].tolist(),
        "t": [tasks.index(int(label)) for label in labels],
        "s": list(texts),
        "names": task_names_for(tasks),
        "colours": [task_colour(task) for task in tasks],
    }
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    safe_id = html.escape(element_id)
    return (
        _SCATTER_TEMPLATE.replace("__ID__", safe_id)
        .replace("__TITLE__", html.escape(title))
        .replace("__COUNT__", f"{len(points):,}")
        .replace("__DATA__", payload)
    )


def standalone_page(snippet: str, title: str) -> str:
    """A complete HTML page around an HTML snippet."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:system-ui,sans-serif;margin:2em'>{snippet}</body></html>"
    )


def _annotate(ax, matrix: np.ndarray, light_text: np.ndarray) -> None:
    """Write each value in its cell, in white where ``light_text`` marks a dark cell."""
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            colour = "white" if light_text[row, column] else "black"
            ax.text(column, row, f"{matrix[row, column]:.2f}", ha="center", va="center", fontsize=8, color=colour)


def _label_axes(ax, names: list[str], xlabel: str, ylabel: str) -> None:
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


_SCATTER_TEMPLATE = """
<div id="__ID__" style="position:relative;font:13px system-ui,sans-serif">
<div style="font-weight:600;margin:4px 0">__TITLE__ (__COUNT__ points)</div>
<canvas width="820" height="620" style="border:1px solid #ddd;max-width:100%"></canvas>
<div class="legend" style="margin:6px 0"></div>
<div class="tip" style="position:absolute;display:none;pointer-events:none;max-width:360px;background:#fff;
border:1px solid #999;border-radius:4px;padding:4px 8px;box-shadow:0 2px 6px rgba(0,0,0,.2)"></div>
<script>
(function () {
  const root = document.getElementById("__ID__");
  const data = __DATA__;
  const canvas = root.querySelector("canvas"), tip = root.querySelector(".tip");
  const legend = root.querySelector(".legend"), ctx = canvas.getContext("2d");
  const pad = {left: 50, right: 15, top: 15, bottom: 45};
  const hidden = new Set();
  const px = i => pad.left + data.x[i] * (canvas.width - pad.left - pad.right);
  const py = i => canvas.height - pad.bottom - data.y[i] * (canvas.height - pad.top - pad.bottom);
  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#888";
    ctx.strokeRect(pad.left, pad.top, canvas.width - pad.left - pad.right, canvas.height - pad.top - pad.bottom);
    ctx.globalAlpha = 0.7;
    for (let i = 0; i < data.x.length; i++) {
      if (hidden.has(data.t[i])) continue;
      ctx.fillStyle = data.colours[data.t[i]];
      ctx.beginPath(); ctx.arc(px(i), py(i), 2.5, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1; ctx.fillStyle = "#222"; ctx.font = "13px system-ui,sans-serif";
    ctx.textAlign = "center";
    ctx.fillText("UMAP 1", pad.left + (canvas.width - pad.left - pad.right) / 2, canvas.height - 15);
    ctx.save(); ctx.translate(18, pad.top + (canvas.height - pad.top - pad.bottom) / 2);
    ctx.rotate(-Math.PI / 2); ctx.fillText("UMAP 2", 0, 0); ctx.restore();
  }
  data.names.forEach((name, t) => {
    const item = document.createElement("span");
    item.style.cssText = "cursor:pointer;margin-right:14px;white-space:nowrap";
    const swatch = document.createElement("span");
    swatch.style.cssText = "display:inline-block;width:10px;height:10px;margin-right:4px;background:" + data.colours[t];
    item.append(swatch, document.createTextNode(name));
    item.title = "click to hide or show";
    item.onclick = () => {
      if (hidden.has(t)) hidden.delete(t); else hidden.add(t);
      item.style.opacity = hidden.has(t) ? 0.35 : 1; draw();
    };
    legend.append(item);
  });
  canvas.addEventListener("mousemove", event => {
    const box = canvas.getBoundingClientRect();
    const mx = (event.clientX - box.left) * canvas.width / box.width;
    const my = (event.clientY - box.top) * canvas.height / box.height;
    let best = -1, bestDistance = 64;
    for (let i = 0; i < data.x.length; i++) {
      if (hidden.has(data.t[i])) continue;
      const d = (px(i) - mx) ** 2 + (py(i) - my) ** 2;
      if (d < bestDistance) { best = i; bestDistance = d; }
    }
    if (best < 0) { tip.style.display = "none"; return; }
    tip.textContent = "";
    const head = document.createElement("b");
    head.textContent = data.names[data.t[best]] + ": ";
    tip.append(head, document.createTextNode(data.s[best]));
    tip.style.left = (event.clientX - root.getBoundingClientRect().left + 12) + "px";
    tip.style.top = (event.clientY - root.getBoundingClientRect().top + 12) + "px";
    tip.style.display = "block";
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  draw();
})();
</script>
</div>
"""
