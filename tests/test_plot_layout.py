"""`tcu backend plot` on stationary tracks (units parked within metres of each other): the
figure drawn by matplotlib's Agg renderer, its text measured as drawn: no two tick labels and
no two session labels overlap."""

from __future__ import annotations

from typing import Any

import pytest

from tcu.firmware import services as sv
from tcu.protocol import messages as m
from tcu.tools import plot_cmd
from tcu.tools.plot_layout import overlapping, visible_ticklabels
from tcu.tools.sessions import Session, SessionBook

T0 = 1_780_000_000
PLACES = [(37.7749, -122.4194), (-33.8688, 151.2093), (65.0100, -147.7123), (48.5, 2.3), (0.0001, -0.0001)]


def parked(lat: float, lon: float, units: list[str]) -> list[Session]:
    """Each unit a crash then a theft session, five fixes each, all within ~3 m."""
    book = SessionBook()
    for u, unit in enumerate(units):
        for sid, (trigger, purpose) in enumerate([(sv.CRASH, sv.P_CRASH_NOTIFICATION),
                                                  (sv.THEFT, sv.P_THEFT_TRACKING)], 1):
            book.add(unit, 7, m.encode_session_start(sid * 100, sid, purpose, T0 + sid * 30, trigger))
            for i in range(5):
                book.add(unit, 7, m.encode_report(sid * 100 + 1 + i, sid, purpose, i * 2,
                                                  round(lat * 1e7) + (i % 2) * 3 + u * 2,
                                                  round(lon * 1e7) + (i % 3) * 4 + u))
            book.add(unit, 7, m.encode_session_end(sid * 100 + 99, sid, T0 + sid * 30 + 20, 1))
    return book.ordered()


def session_labels(ax: Any) -> list[Any]:
    from matplotlib.text import Annotation

    return [t for t in ax.texts if isinstance(t, Annotation)]


@pytest.mark.parametrize("units", [["car-1"], ["car-1", "car-2", "car-3"], ["fleet-000117", "fleet-000118"]])
@pytest.mark.parametrize("lat, lon", PLACES)
def test_stationary_tracks_have_legible_ticks_and_labels(lat: float, lon: float, units: list[str]) -> None:
    plt = plot_cmd._pyplot()
    figure = plot_cmd.draw(plt, parked(lat, lon, units))
    try:
        track, strip = figure.axes[:2]
        renderer = figure.canvas.get_renderer()
        ticks = visible_ticklabels(figure, track)
        assert len(ticks) >= 2, [t.get_text() for t in ticks]
        assert not overlapping([t.get_window_extent(renderer) for t in ticks]), [t.get_text() for t in ticks]
        for ax in (track, strip):
            labels = session_labels(ax)
            assert len(labels) == 2 * len(units)  # one per session
            assert not overlapping([t.get_window_extent(renderer) for t in labels]), [t.get_text() for t in labels]
        texts = {t.get_text() for t in session_labels(track)}
        assert texts == ({"1", "2"} if len(units) == 1 else {"%s/%d" % (u, s) for u in units for s in (1, 2)})
    finally:
        plt.close(figure)
