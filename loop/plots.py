"""The pictures a run draws: confusion matrices, the PCA map of the mined split, metric-vs-tokens curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# beyond this many labels a confusion plot shows the labels most involved in errors
CONFUSION_TOP = 20


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(pred: list[str], gold: list[str], labels: list[str]) -> np.ndarray:
    """Counts, rows gold and columns predicted, in the order of `labels`."""
    idx = {lab: i for i, lab in enumerate(labels)}
    mat = np.zeros((len(labels), len(labels)), np.int64)
    for p, g in zip(pred, gold):
        mat[idx[g], idx[p]] += 1
    return mat


def most_confused(mat: np.ndarray, top: int = CONFUSION_TOP) -> list[int]:
    """Indices of the `top` labels with the most errors (as gold or as prediction), in label order."""
    if len(mat) <= top:
        return list(range(len(mat)))
    off = mat - np.diag(np.diag(mat))
    involved = off.sum(0) + off.sum(1)
    return sorted(np.argsort(-involved, kind="stable")[:top].tolist())


def confusion_png(mat: np.ndarray, labels: list[str], path: Path, title: str, top: int = CONFUSION_TOP,
                  keep: list[int] | None = None) -> list[int]:
    """Write a confusion-matrix PNG (rows gold, columns predicted), sized to the labels it shows: at most
    `top`, the ones most involved in errors (or `keep`), so that 77 labels stay readable. Returns the
    indices shown."""
    plt = _plt()
    keep = most_confused(mat, top) if keep is None else keep
    sub, names = mat[np.ix_(keep, keep)], [labels[i] for i in keep]
    n = len(keep)
    side = max(4.5, 0.42 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    ax.imshow(sub, cmap="Blues")
    small = 8 if n > 10 else 10
    ax.set_xticks(range(n), [s[:24] for s in names], rotation=60 if n > 6 else 30, ha="right", fontsize=small)
    ax.set_yticks(range(n), [s[:24] for s in names], fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    shown = f" ({n} of {len(labels)} labels: those with the most errors)" if n < len(labels) else ""
    ax.set_title(title + shown, fontsize=10)
    for i in range(n):
        for j in range(n):
            if sub[i, j]:
                ax.text(j, i, str(sub[i, j]), ha="center", va="center", fontsize=small - 1,
                        color="white" if sub[i, j] > sub.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return keep


MAP_STYLE = {"correct": ("#9ecae1", "o", 10), "low_confidence": ("#fd8d3c", "o", 18),
             "wrong": ("#d62728", "x", 22), "generated": ("#2ca02c", "^", 22)}


def embedding_map_png(vectors: np.ndarray, status: list[str], new_vecs, path: Path, title: str,
                      marks: list[tuple[str, list[int]]] = ()) -> np.ndarray:
    """2-D PCA of the mined examples (correct / wrong / low-confidence) and this round's accepted samples;
    each of `marks` (text, rows of `vectors`: a neighbourhood and its confusion) is written at its rows'
    centre."""
    plt = _plt()
    pts = vectors if new_vecs is None else np.concatenate([vectors, new_vecs])
    labels = list(status) + ["generated"] * (0 if new_vecs is None else len(new_vecs))
    centred = pts - pts.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6, 5))
    for kind, (colour, marker, size) in MAP_STYLE.items():
        idx = [i for i, s in enumerate(labels) if s == kind]
        if idx:
            ax.scatter(xy[idx, 0], xy[idx, 1], c=colour, marker=marker, s=size, label=f"{kind} ({len(idx)})",
                       alpha=0.8, linewidths=1)
    for text, rows in marks:
        if rows:
            x, y = xy[rows].mean(0)
            ax.annotate(text, (x, y), fontsize=7, ha="center", color="#222",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#d62728", "alpha": 0.8})
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return xy




def curves_png(series: list[dict], baseline: float | None, metric: str, path: Path) -> None:
    """The metric per round against tokens spent: one line per run (`series`: name, tokens, values, style),
    the seed-only baseline as a dotted line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in series:
        ax.plot(s["tokens"], s["values"], s.get("style", "o-"), label=s["name"], alpha=0.9)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle=":", label=f"baseline (seed only) {baseline:.4f}")
    ax.set_xlabel("teacher tokens spent")
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
