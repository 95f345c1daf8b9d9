"""Great Expectations Data Docs that work offline, one site per run.

Each run (the day it is about: crm.pipeline.data_docs_day) has a site of its own,
``<data_docs_dir>/<day>/index.html``, holding every gate's validations of that day: the raw batches
(crm load), the marts (crm gate) and the scores (crm score), each step adding its own pages to it.
The validation results are kept on disk for that (``<data_docs_dir>/../validations``), and
``<data_docs_dir>/index.html`` lists the runs' sites, newest first.

Data Docs load their scripts and stylesheets (Bootstrap, jQuery, bootstrap-table, Vega, Font
Awesome) from CDNs, so offline a site renders unstyled with an empty index. The project installs the
same packages from npm (``expectations/data_docs_assets``, `make install`); each build copies them
once beside the sites (``<data_docs_dir>/static/vendor/``) and points the pages at them.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
from datetime import date
from pathlib import Path

from crm.settings import Settings

log = logging.getLogger(__name__)

# What Data Docs' templates load from the internet, and the file of the npm packages
# (expectations/data_docs_assets/package.json) that stands in for each.
CDN_ASSETS = {
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/dist/umd/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table/dist/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table/dist/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css"
    ),
}
# Font Awesome's stylesheet loads its fonts from ../webfonts/, beside its css/ folder.
FONT_FOLDER = "@fortawesome/fontawesome-free/webfonts"
# The navigation bar's logo comes from GX's web assets (with the context's id as a query string):
# the site has the same image under static/images/.
LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/([\w.-]+)(\?[^\"']*)?")
# A CDN's subresource-integrity check (sha384 of its exact file) does not hold for the npm package's.
INTEGRITY = re.compile(r'\s+(integrity|crossorigin)="[^"]*"')
VENDOR = Path("static") / "vendor"


def assets_dir(settings: Settings) -> Path:
    return settings.expectations_dir / "data_docs_assets" / "node_modules"


def site_dir(settings: Settings, day: date) -> Path:
    """The run's site: every gate's validations of ``day``."""
    return settings.data_docs_dir / day.isoformat()


def validations_dir(settings: Settings) -> Path:
    """Where the validation results stay, so that each step's pages join the run's site."""
    return settings.data_docs_dir.parent / "validations"


def make_offline(site: Path, assets: Path) -> int:
    """Point the site's pages at copies of their scripts and stylesheets, kept once for every run's site
    under ``<data_docs_dir>/static/vendor/`` (the site's parent); return how many pages changed. Without
    the installed packages, the pages keep their CDN links (and a warning says how to install them)."""
    missing = [name for name in CDN_ASSETS.values() if not (assets / name).is_file()]
    if missing:
        log.warning(
            "Data Docs keep their CDN links: %s is missing %s (`make install` installs them with npm)",
            assets,
            ", ".join(missing[:3]),
        )
        return 0
    vendor = site.parent / VENDOR
    for name in [*CDN_ASSETS.values(), FONT_FOLDER]:
        source, target = assets / name, vendor / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif not target.exists() or target.stat().st_size != source.stat().st_size:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    changed = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "https://" not in text:
            continue
        root = os.path.relpath(site, page.parent).replace(os.sep, "/")
        offline = text
        for url, name in CDN_ASSETS.items():
            offline = offline.replace(f'"{url}"', f'"{root}/../{VENDOR.as_posix()}/{name}"')
        offline = LOGO.sub(rf"{root}/static/images/\1", offline)
        offline = INTEGRITY.sub("", offline)
        if offline != text:
            page.write_text(offline, encoding="utf-8")
            changed += 1
    return changed


def write_runs_index(data_docs: Path) -> Path:
    """``data_docs/index.html``: a link to each run's site, newest first (plain HTML, nothing to load)."""
    days = sorted((path.name for path in data_docs.iterdir() if _is_day(path.name) and path.is_dir()), reverse=True)
    items = "\n".join(f'<li><a href="{day}/index.html">{html.escape(day)}</a></li>' for day in days)
    index = data_docs / "index.html"
    index.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Data Docs: runs</title></head><body>\n"
        "<h1>Data Docs</h1>\n<p>One site per run (the day it is about), with every gate's validations: "
        "the raw batches, the marts and the scores.</p>\n"
        f"<ul>\n{items}\n</ul>\n</body></html>\n",
        encoding="utf-8",
    )
    return index


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return True
