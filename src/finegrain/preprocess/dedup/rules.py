"""Which kinds of copy a confirmed pair shows, named for the report and for preprocess.near_duplicate_action.

    rule = copy_rule(match, a, b)   # "crop+photometric"; a, b: normalize.Picture

The kinds, each read off what the check had to undo: `exif` (one file stores its pixels turned, with an EXIF
Orientation), `letterbox` (bars trimmed off one and not the other), `flip` (mirrored), `rotation` (turned by
more than half a degree), `crop` (zoomed, shifted or stretched: a crop scaled back), `overlay` (one compact
region differs: a watermark, logo, decal or other local edit), `photometric` (grey levels remapped: brightness,
contrast, gamma), `resize` (other pixel size, same picture), `reencode` (none of these: saved again). Exact
copies (same bytes) are linked before the check and are `exact`.
"""

from __future__ import annotations

from finegrain.preprocess.dedup.match import Match
from finegrain.preprocess.dedup.normalize import Picture

_TURN = 0.5  # degrees
_ZOOM, _SHIFT, _ASPECT = 0.02, 0.01, 0.02  # relative changes under which the map is the identity
_TRIM = 0.05  # share of a side: bars people add are wide; a crop moves a photo's own dark edge by a few %
_TONE = 6.0  # grey levels the level mapping may move a pixel on average without being a photometric change


def copy_rule(match: Match, a: Picture, b: Picture) -> str:
    """The kinds of copy (config.copy_kinds.COPY_KINDS, joined by "+") that turn a into b, as the check found them."""
    kinds = []
    if a.orientation != b.orientation:
        kinds.append("exif")
    if max(abs(x - y) for x, y in zip(a.trim, b.trim)) > _TRIM:
        kinds.append("letterbox")
    if match.flipped:
        kinds.append("flip")
    g = match.geometry()
    if abs(g["turn"]) > _TURN:
        kinds.append("rotation")
    if abs(g["zoom"] - 1) > _ZOOM or g["shift"] > _SHIFT or abs(g["aspect"] - 1) > _ASPECT:
        kinds.append("crop")
    if match.verdict == "edit":
        kinds.append("overlay")
    if match.tone > _TONE:
        kinds.append("photometric")
    if not kinds:
        # Other pixel size, same shape, nothing else moved: a resize. Same size: saved again.
        kinds.append("resize" if a.size != b.size else "reencode")
    return "+".join(kinds)
