"""Legible text on `tcu backend plot`'s figure, measured on the figure as drawn (Agg renderer).

Tick labels: as many ticks as the widest label leaves room for (a stationary track at
-122.4194 has 9-character longitudes that run together at matplotlib's default count).
Session labels: each placed beside its anchor, stacked upwards past any label already placed,
so units parked within metres of each other (or sessions starting in the same second) do not
print over each other.
"""

from __future__ import annotations

from typing import Any

STEPS = [1, 2, 2.5, 5, 10]


def thin_ticks(figure: Any, ax: Any, most: int = 8) -> None:
    """The most x ticks (up to `most`) whose labels stay a character's width apart."""
    from matplotlib.ticker import MaxNLocator

    renderer = figure.canvas.get_renderer()
    for bins in range(most, 0, -1):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=bins, steps=STEPS))
        labels = visible_ticklabels(figure, ax)
        pad = max((t.get_window_extent(renderer).width / max(len(t.get_text()), 1) for t in labels), default=0)
        if not overlapping([t.get_window_extent(renderer) for t in labels], pad):
            return


def visible_ticklabels(figure: Any, ax: Any) -> list[Any]:
    """The x tick labels drawn (within the axis' limits, with text)."""
    figure.canvas.draw()
    low, high = sorted(ax.get_xlim())
    return [t for t, v in zip(ax.get_xticklabels(), ax.get_xticks(), strict=False)
            if t.get_text() and low <= v <= high]


def overlap(a: Any, b: Any, pad: float = 2.0) -> bool:
    """Whether two display-space boxes overlap (or come within pad pixels)."""
    return bool(a.x0 < b.x1 + pad and b.x0 < a.x1 + pad and a.y0 < b.y1 + pad and b.y0 < a.y1 + pad)


def overlapping(boxes: list[Any], pad: float = 2.0) -> bool:
    """Whether any two of these boxes overlap."""
    return any(overlap(a, b, pad) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def place_labels(figure: Any, ax: Any, labels: list[tuple[float, float, str]], along: bool = False,
                 fontsize: str = "small") -> list[Any]:
    """Annotate each (x, y, text) in data coordinates, 6 points up and right of it, or moved
    further up (along: further right, staying in its row) until it overlaps no label placed
    before. Returns the annotations."""
    renderer = figure.canvas.get_renderer()
    placed: list[Any] = []
    boxes: list[Any] = []
    for x, y, text in labels:
        right, rise = 6.0, 6.0
        annotation = ax.annotate(text, (x, y), textcoords="offset points", xytext=(right, rise), fontsize=fontsize)
        box = annotation.get_window_extent(renderer)
        points = 72 / figure.dpi  # per pixel
        for _ in range(2 * len(boxes) + 1):
            if not any(overlap(box, other) for other in boxes):
                break
            if along:
                right += (box.width + 6) * points
            else:
                rise += (box.height + 1) * points
            annotation.set_position((right, rise))
            box = annotation.get_window_extent(renderer)
        placed.append(annotation)
        boxes.append(box)
    return placed
