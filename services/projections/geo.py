"""The district map of the dashboard: SVG paths made from a GeoJSON file at start-up.

The district polygons (../shared/data/serbia_districts.geojson) are a third-party
file whose data license is unverified, so they are not part of this repository:
the service reads them at run time (`PROJECTIONS_GEOJSON`, default
../shared/data/serbia_districts.geojson next to the repository) and sends only
simplified outlines drawn from them. Without the file the dashboard shows a
tile map instead: one square per district, laid out roughly as on the map
(the layout below is ours).

Projection: equirectangular with longitudes scaled by cos(44 deg N), enough
for a country 4 degrees across. Simplification: Douglas-Peucker at ~0.004 deg
(about 400 m), which keeps the page small (tens of kB) and the shapes
recognisable.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any

from immunreg.reference.geography import districts
from immunreg.structs import Struct

log = logging.getLogger(__name__)

WIDTH = 460.0
TOLERANCE_DEG = 0.004
LAT0 = 44.0

Point = tuple[float, float]


class Shape(Struct):
    """One district on the map: its outline (SVG path) and where to put its label."""

    code: str | None  # ISO 3166-2:RS, None for areas without 2022 census data
    name: str
    d: str
    cx: float
    cy: float


class DistrictMap(Struct):
    """Every shape, the SVG viewBox size, and what it was drawn from."""

    kind: str  # "geojson" or "tiles"
    width: float
    height: float
    shapes: list[Shape]
    note: str


def _perpendicular(p: Point, a: Point, b: Point) -> float:
    (x, y), (x1, y1), (x2, y2) = p, a, b
    dx, dy = x2 - x1, y2 - y1
    if dx == 0 and dy == 0:
        return math.hypot(x - x1, y - y1)
    return abs(dy * x - dx * y + x2 * y1 - y2 * x1) / math.hypot(dx, dy)


def simplify(points: list[Point], tolerance: float) -> list[Point]:
    """Douglas-Peucker: drop points closer than `tolerance` to the simplified line."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        worst, index = 0.0, -1
        for i in range(first + 1, last):
            distance = _perpendicular(points[i], points[first], points[last])
            if distance > worst:
                worst, index = distance, i
        if index >= 0 and worst > tolerance:
            keep[index] = True
            stack += [(first, index), (index, last)]
    return [p for p, k in zip(points, keep, strict=True) if k]


def _rings(geometry: dict[str, Any]) -> list[list[Point]]:
    coordinates = geometry.get("coordinates") or []
    polygons = coordinates if geometry.get("type") == "MultiPolygon" else [coordinates]
    rings: list[list[Point]] = []
    for polygon in polygons:
        for ring in polygon:
            rings.append([(float(lon), float(lat)) for lon, lat, *_ in ring])
    return rings


def _from_geojson(path: Path) -> DistrictMap:
    document = json.loads(path.read_text("utf-8"))
    by_name = {d.geojson_name: d for d in districts().values()}
    scale_x = math.cos(math.radians(LAT0))
    features = []
    for feature in document["features"]:
        name = feature["properties"]["name"]
        rings = [simplify(r, TOLERANCE_DEG) for r in _rings(feature["geometry"])]
        features.append((name, [r for r in rings if len(r) >= 4]))
    points = [p for _, rings in features for ring in rings for p in ring]
    min_x = min(lon for lon, _ in points) * scale_x
    max_x = max(lon for lon, _ in points) * scale_x
    min_lat = min(lat for _, lat in points)
    max_lat = max(lat for _, lat in points)
    unit = WIDTH / (max_x - min_x)
    height = round((max_lat - min_lat) * unit, 1)

    def xy(p: Point) -> Point:
        return (round(p[0] * scale_x * unit - min_x * unit, 1), round((max_lat - p[1]) * unit, 1))

    shapes = []
    for name, rings in features:
        parts, area_x, area_y, area = [], 0.0, 0.0, 0.0
        for ring in rings:
            projected = [xy(p) for p in ring]
            parts.append("M" + "L".join(f"{x:g},{y:g}" for x, y in projected[:-1]) + "Z")
            for (x1, y1), (x2, y2) in itertools.pairwise(projected):
                cross = x1 * y2 - x2 * y1
                area += cross
                area_x += (x1 + x2) * cross
                area_y += (y1 + y2) * cross
        cx, cy = (area_x / (3 * area), area_y / (3 * area)) if area else (0.0, 0.0)
        district = by_name.get(name)
        shapes.append(
            Shape(
                code=district.code if district else None,
                name=district.name if district else name,
                d="".join(parts),
                cx=round(cx, 1),
                cy=round(cy, 1),
            )
        )
    shapes.sort(key=lambda s: (s.code is None, s.code or s.name))
    return DistrictMap(
        kind="geojson",
        width=WIDTH,
        height=height,
        shapes=shapes,
        note="District outlines simplified from serbia_districts.geojson "
        "(codeforgermany/click_that_hood; data license unverified, not redistributed).",
    )


# (column, row) of each district on the tile map: north at the top, west on the left.
TILES: dict[str, tuple[int, int]] = {
    "RS-01": (1, 0), "RS-03": (2, 0),
    "RS-05": (0, 1), "RS-06": (1, 1), "RS-02": (2, 1),
    "RS-07": (1, 2), "RS-00": (2, 2), "RS-04": (3, 2),
    "RS-08": (0, 3), "RS-09": (1, 3), "RS-10": (2, 3), "RS-11": (3, 3), "RS-14": (4, 3),
    "RS-16": (0, 4), "RS-17": (1, 4), "RS-12": (2, 4), "RS-13": (3, 4), "RS-15": (4, 4),
    "RS-18": (1, 5), "RS-19": (2, 5), "RS-20": (3, 5), "RS-22": (4, 5),
    "RS-21": (2, 6), "RS-23": (3, 6),
    "RS-24": (3, 7),
}  # fmt: skip
TILE = 86.0
GAP = 6.0


def tile_map(reason: str) -> DistrictMap:
    """Square tiles in a rough geographic layout (no outlines needed)."""
    shapes = []
    for code, district in sorted(districts().items()):
        col, row = TILES[code]
        x, y = col * (TILE + GAP) + GAP, row * (TILE + GAP) + GAP
        shapes.append(
            Shape(
                code=code,
                name=district.name,
                d=f"M{x:g},{y:g}h{TILE:g}v{TILE:g}h-{TILE:g}Z",
                cx=x + TILE / 2,
                cy=y + TILE / 2,
            )
        )
    return DistrictMap(
        kind="tiles",
        width=5 * (TILE + GAP) + GAP,
        height=8 * (TILE + GAP) + GAP,
        shapes=shapes,
        note=f"Tile map (one square per district): {reason}",
    )


def district_map(path: Path) -> DistrictMap:
    """Outlines from the GeoJSON file when it is there and readable, else tiles."""
    if not path.is_file():
        return tile_map(f"no district outlines at {path}")
    try:
        return _from_geojson(path)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        log.warning("district outlines unreadable; using tiles", exc_info=True)
        return tile_map(f"district outlines unreadable ({type(exc).__name__})")
