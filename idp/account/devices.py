"""A short human description of a browser from its User-Agent ("Firefox on Windows"), for the
sessions page. Deliberately small: the families people recognise, in the order that matters
(Edge and Opera also say Chrome; Chrome also says Safari)."""
from __future__ import annotations

import re

BROWSERS = [("Edge", r"Edg(e|A|iOS)?/"), ("Opera", r"OPR/|Opera"), ("Samsung Internet", r"SamsungBrowser/"),
            ("Firefox", r"Firefox/|FxiOS/"), ("Chrome", r"Chrome/|CriOS/"), ("Safari", r"Safari/")]
SYSTEMS = [("iOS", r"iPhone|iPad|iPod"), ("Android", r"Android"), ("Windows", r"Windows"),
           ("macOS", r"Mac OS X|Macintosh"), ("ChromeOS", r"CrOS"), ("Linux", r"Linux")]


def describe_user_agent(user_agent: str | None) -> str:
    text = user_agent or ""
    browser = next((name for name, pattern in BROWSERS if re.search(pattern, text)), None)
    system = next((name for name, pattern in SYSTEMS if re.search(pattern, text)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"
