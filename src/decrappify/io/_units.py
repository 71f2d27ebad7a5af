"""Physical units: NGFF unit names and the spellings found in TIFF/OME/ImageJ metadata."""

from __future__ import annotations

#: NGFF (UDUNITS-2) names of the length units decrappify writes, to their OME-XML symbol.
LENGTH_UNITS = {
    "kilometer": "km",
    "meter": "m",
    "centimeter": "cm",
    "millimeter": "mm",
    "micrometer": "µm",
    "nanometer": "nm",
    "angstrom": "Å",
    "picometer": "pm",
}
#: NGFF names of the time units, to their OME-XML symbol.
TIME_UNITS = {
    "hour": "h",
    "minute": "min",
    "second": "s",
    "millisecond": "ms",
    "microsecond": "µs",
    "nanosecond": "ns",
}
#: Size of each length unit in micrometres (TIFF resolution tags use centimetres).
MICROMETERS_PER_UNIT = {
    "kilometer": 1e9,
    "meter": 1e6,
    "centimeter": 1e4,
    "millimeter": 1e3,
    "micrometer": 1.0,
    "nanometer": 1e-3,
    "angstrom": 1e-4,
    "picometer": 1e-6,
}

_ALIASES = {
    "km": "kilometer",
    "m": "meter",
    "cm": "centimeter",
    "mm": "millimeter",
    "µm": "micrometer",
    "μm": "micrometer",  # Greek mu
    "um": "micrometer",
    "\\u00b5m": "micrometer",  # ImageJ writes the escape sequence literally
    "micron": "micrometer",
    "microns": "micrometer",
    "nm": "nanometer",
    "å": "angstrom",
    "a": "angstrom",
    "pm": "picometer",
    "h": "hour",
    "hr": "hour",
    "min": "minute",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "µs": "microsecond",
    "μs": "microsecond",
    "us": "microsecond",
    "ns": "nanosecond",
}


def normalize_unit(unit: str | None) -> str | None:
    """NGFF name of a unit spelled as in OME-XML, ImageJ or NGFF; None if unknown."""
    if unit is None:
        return None
    text = str(unit).strip()
    key = text.lower()
    if key in LENGTH_UNITS or key in TIME_UNITS:
        return key
    if key.endswith("s") and key[:-1] in LENGTH_UNITS | TIME_UNITS:
        return key[:-1]  # "micrometers", "seconds"
    return _ALIASES.get(key, _ALIASES.get(text))


def ome_symbol(unit: str | None) -> str | None:
    """OME-XML symbol (``"µm"``, ``"s"``) of an NGFF unit name; None if it has none."""
    name = normalize_unit(unit)
    if name is None:
        return None
    return LENGTH_UNITS.get(name) or TIME_UNITS.get(name)
