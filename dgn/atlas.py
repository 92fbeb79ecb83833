"""A unit atlas: a static website of a network's units, opened from disk with no server.

Pages: ``index.html`` (the model: its layers, the runs, examples, pairs and audits it was built from), one page
per layer (every unit's best preferred image as a grid, paged and lazy-loaded, searchable by unit number and by
the class names of its top dataset images) and one page per unit (every restart of every run, the top-k and
bottom-k dataset examples, a histogram of the unit's activations on a sample of real images with the synthetic
activations marked, and the pairs and audit verdicts it takes part in).

Images are copied as files into ``img/`` (no inline base64), and each layer's grid data is a small script
(``layers/<layer>.js``), not JSON, because browsers refuse ``fetch`` from ``file://`` pages. The site is built in
a temporary folder beside ``out`` and renamed into place, so an interrupted build leaves no half-written site.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from dgn import __version__
from dgn.errors import DGNError
from dgn.files import atomic_write_bytes

EAGER_TILES = 24  # images of a page that load at once (about a screen); the rest wait until scrolled into view
MARKER = "atlas.json"  # written last; its presence marks a folder as an atlas this module may replace
_TARGET = re.compile(r"^([^:+@]+):(\d+)")


@dataclass
class AtlasUnit:
    """What the atlas shows of one unit."""

    layer: str
    unit: int
    rows: list[dict] = field(default_factory=list)  # run rows, each with "run" (index) and "src" (image file)
    top: list[dict] = field(default_factory=list)  # {"score", "src", "label"}, best first
    bottom: list[dict] = field(default_factory=list)
    sample: np.ndarray | None = None  # the unit's scores of the examples' evenly spaced sample of real images
    pairs: list[dict] = field(default_factory=list)  # pair rows it takes part in, with "partner_of_unit"

    @property
    def best(self) -> dict | None:
        """The preferred image with the highest final activation, if any run made one."""
        return max(self.rows, key=lambda r: r["act_end"], default=None)

    def classes(self) -> list[tuple[str, int]]:
        """The class names of the top examples with their counts, most frequent first."""
        return Counter(item["label"] for item in self.top if item.get("label")).most_common()


@dataclass
class AtlasSources:
    """Everything read from disk before a page is written."""

    title: str
    classifier: str | None
    layers: dict[str, dict[int, AtlasUnit]]  # display name -> unit -> AtlasUnit, in network order
    runs: list[dict]  # {"name", "folder", "method", "generator", "rows"}
    examples: dict | None  # {"folder", "images", "k", "bottom", "sample"}
    pairs: list[dict]  # {"folder", "picture", "rows"}
    audits: list[dict]  # {"folder", "flagged", "items", "montage", "by_path"}
    names: dict[str, str] = field(default_factory=dict)  # any name of a layer -> the name shown


def _layer_names(topk_index: dict | None) -> dict[str, str]:
    """Every known name of a layer (module name and alias) -> the name the atlas shows (the alias if any)."""
    names: dict[str, str] = {}
    for canonical, entry in (topk_index or {}).get("layers", {}).items():
        shown = entry.get("alias") or canonical
        names[canonical] = names[shown] = shown
    return names


class _Collector:
    """Gathers what every source says about each unit, under the layer names the atlas shows."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.layers: dict[str, dict[int, AtlasUnit]] = {}
        self.classifier: str | None = None

    def unit(self, layer: str, unit: int) -> AtlasUnit:
        shown = self.names.get(layer, layer)
        return self.layers.setdefault(shown, {}).setdefault(unit, AtlasUnit(shown, unit))

    def add_examples(self, examples) -> dict:
        """Every unit's top and bottom examples and activation sample from a ``dgn topk`` output."""
        self.classifier = examples.index.get("config", {}).get("classifier")
        if examples.images and not Path(examples.images[0]).is_file():
            raise DGNError(f"the dataset images of {examples.folder} are not where dgn topk read them "
                           f"({examples.images[0]}); put them back or rerun dgn topk")
        labels = examples.index.get("labels") or []
        for canonical, ex in examples.layers.items():
            for u in range(ex.units):
                unit = self.unit(canonical, u)
                for kind, bottom in (("top", False), ("bottom", True)):
                    getattr(unit, kind).extend(
                        {"score": item["score"], "label": labels[item["id"]] if labels else None,
                         "src": examples.folder / item["crop"] if item.get("crop") else Path(item["image"])}
                        for item in examples.unit(canonical, u, bottom))
                if ex.sample.numel():
                    sample = ex.sample[u].numpy()
                    unit.sample = sample[np.isfinite(sample)]
        config = examples.index["config"]
        return {"folder": str(examples.folder), "images": len(examples.images), "k": config.get("k"),
                "bottom": config.get("bottom"), "sample": examples.index.get("sample")}

    def add_run(self, folder: Path, index: int) -> dict:
        """A run's single-unit rows as preferred images; refuses a run of another classifier."""
        from dgn.outputs import read_manifest

        manifest = read_manifest(folder)
        config = manifest.get("config") or {}
        name = (config.get("classifier") or {}).get("name")
        if self.classifier is None:
            self.classifier = name
        elif name is not None and name != self.classifier:
            raise DGNError(f"run {folder} was made on classifier {name!r}, the atlas shows {self.classifier!r}")
        kept = 0
        for row in manifest.get("rows", []):
            if row.get("unit") is None or "partner" in row or "+" in row["target"] or row.get("kind") is not None:
                continue
            self.unit(row["layer"], int(row["unit"])).rows.append({**row, "run": index, "src": folder / row["image"]})
            kept += 1
        return {"name": folder.name, "folder": str(folder), "method": config.get("method", "?"),
                "generator": (config.get("generator") or {}).get("name"), "rows": kept}

    def add_pairs(self, folder: Path) -> dict:
        """A pair run's pair images, on both units' pages."""
        from dgn.outputs import read_manifest

        rows = [r for r in read_manifest(folder).get("rows", []) if "partner" in r]
        if not rows:
            raise DGNError(f"{folder} holds no pair rows (a dgn pair run)")
        for row in rows:
            a, b = (_TARGET.match(part) for part in row["target"].split("+", 1))
            if a is not None and b is not None:
                self.unit(a[1], int(a[2])).pairs.append({**row, "src": folder / row["image"], "partner_of_unit": b[0]})
                self.unit(b[1], int(b[2])).pairs.append({**row, "src": folder / row["image"], "partner_of_unit": a[0]})
        return {"folder": str(folder), "picture": folder / "pairs.png", "rows": len(rows)}

    @staticmethod
    def read_audit(folder: Path) -> dict:
        """An audit's verdicts, by the resolved path of each audited image."""
        path = folder / "audit.json"
        if not path.is_file():
            raise DGNError(f"{folder} holds no audit.json (a dgn audit output)")
        content = json.loads(path.read_text())
        items = content.get("items", [])
        return {"folder": str(folder), "flagged": content.get("flagged"), "items": len(items),
                "montage": folder / "montage.png",
                "by_path": {str(Path(it["path"]).resolve()): it for it in items if it.get("path")}}


def read_sources(runs: Sequence[str | Path] = (), topk: str | Path | None = None,
                 pairs: Sequence[str | Path] = (), audits: Sequence[str | Path] = (),
                 title: str | None = None) -> AtlasSources:
    """Read run folders (``dgn synthesize``/``baseline``/``evolve``/``demo``), a ``dgn topk`` folder, pair runs
    and audits into the atlas's units; refuse inputs that belong to different classifiers."""
    from dgn.topk import TopExamples

    if not runs and topk is None:
        raise DGNError("an atlas needs --runs, --topk or both")
    examples = TopExamples.read(topk) if topk is not None else None
    names = _layer_names(examples.index if examples else None)
    collect = _Collector(names)
    info = collect.add_examples(examples) if examples is not None else None
    run_infos = [collect.add_run(Path(folder), i) for i, folder in enumerate(runs)]
    pair_infos = [collect.add_pairs(Path(folder)) for folder in pairs]
    audit_infos = [_Collector.read_audit(Path(folder)) for folder in audits]
    order = list(dict.fromkeys([*names.values(), *collect.layers]))  # the network's order first
    layers = {name: dict(sorted(collect.layers[name].items())) for name in order if name in collect.layers}
    return AtlasSources(title or f"Atlas of {collect.classifier or 'a network'}", collect.classifier, layers,
                        run_infos, info, pair_infos, audit_infos, names)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def histogram_svg(sample: np.ndarray, marks: Sequence[tuple[float, str]], bins: int = 40,
                  size: tuple[int, int] = (520, 170)) -> str:
    """An inline SVG histogram of ``sample`` with vertical red lines at ``marks`` ((value, tooltip), ...)."""
    width, height = size
    left, right, top, bottom = 40, 10, 10, 28
    values = [float(v) for v, _ in marks]
    low = float(min(sample.min(initial=np.inf), *values, np.inf)) if len(sample) or values else 0.0
    high = float(max(sample.max(initial=-np.inf), *values, -np.inf)) if len(sample) or values else 1.0
    if not np.isfinite(low) or high <= low:
        low, high = (low - 1.0, low + 1.0) if np.isfinite(low) else (0.0, 1.0)
    counts, edges = np.histogram(sample, bins=bins, range=(low, high))
    peak = max(int(counts.max(initial=0)), 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * plot_w

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="histogram of real activations">'),
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>']
    for count, start, end in zip(counts, edges[:-1], edges[1:]):
        h = count / peak * plot_h
        parts.append(f'<rect x="{x(start):.1f}" y="{top + plot_h - h:.1f}" width="{max(x(end) - x(start) - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="#7a9cc6"><title>{start:.3g} to {end:.3g}: {count}</title></rect>')
    for value, tip in marks:
        parts.append(f'<line x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" y2="{top + plot_h}" stroke="#d62728" '
                     f'stroke-width="2"><title>{escape(tip)}</title></line>')
    parts += [f'<text x="{left}" y="{height - 8}" font-size="11">{low:.3g}</text>',
              f'<text x="{left + plot_w}" y="{height - 8}" font-size="11" text-anchor="end">{high:.3g}</text>',
              f'<text x="{left - 4}" y="{top + 10}" font-size="11" text-anchor="end">{peak}</text>', "</svg>"]
    return "".join(parts)


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}a{color:#1a5fb4}
.grid{display:flex;flex-wrap:wrap;gap:8px}.card{width:132px;font-size:12px;text-align:center}
.card img,.tile img{width:128px;height:128px;image-rendering:pixelated;background:#eee;display:block}
.tile{display:inline-block;margin:4px;font-size:12px;text-align:center;vertical-align:top}
.real img{outline:2px solid #7a9cc6}.muted{color:#777}nav{margin-bottom:1em}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}
.pager{margin:1em 0}.pager button{margin:0 4px}input[type=search]{width:22em;padding:4px}
"""

LAYER_SCRIPT = """// The layer page: one page of units at a time, filtered by unit number or class name; state in the URL hash.
(function () {
  var data = window.ATLAS_LAYER, size = data.pageSize, grid = document.getElementById("grid"), EAGER = data.eager;
  var input = document.getElementById("search"), info = document.getElementById("info");
  function state() {
    var h = new URLSearchParams(location.hash.slice(1));
    return {q: h.get("q") || "", p: Math.max(1, parseInt(h.get("p") || "1", 10) || 1)};
  }
  function matches(unit, q) {
    if (!q) return true;
    if (/^\\d+$/.test(q)) return unit.u === parseInt(q, 10);
    return unit.search.toLowerCase().split(" ").indexOf(q.toLowerCase()) >= 0;
  }
  function card(unit, i) {
    var a = document.createElement("a"), img = document.createElement("img"), cap = document.createElement("div");
    a.href = unit.href; a.className = "card" + (unit.real ? " real" : "");
    if (i >= EAGER) img.loading = "lazy";  // the first screen loads at once, the rest as it scrolls into view
    img.src = unit.img; img.width = 128; img.height = 128; img.alt = "unit " + unit.u;
    cap.textContent = unit.u + (unit.act === null ? "" : " \\u00b7 " + unit.act) + (unit.classes ? " \\u00b7 " + unit.classes : "");
    a.appendChild(img); a.appendChild(cap); return a;
  }
  function render() {
    var s = state(), shown = data.units.filter(function (u) { return matches(u, s.q.trim()); });
    var pages = Math.max(1, Math.ceil(shown.length / size)), p = Math.min(s.p, pages);
    if (input.value !== s.q) input.value = s.q;
    grid.textContent = "";
    shown.slice((p - 1) * size, p * size).forEach(function (u, i) { grid.appendChild(card(u, i)); });
    info.textContent = shown.length + " of " + data.units.length + " units, page " + p + " of " + pages;
    document.getElementById("prev").disabled = p <= 1;
    document.getElementById("next").disabled = p >= pages;
    window.ATLAS_PAGE = {page: p, pages: pages, shown: shown.length};
  }
  function go(q, p) { location.hash = "q=" + encodeURIComponent(q) + "&p=" + p; }
  input.addEventListener("input", function () { go(input.value, 1); });
  document.getElementById("prev").addEventListener("click", function () { go(state().q, state().p - 1); });
  document.getElementById("next").addEventListener("click", function () { go(state().q, state().p + 1); });
  window.addEventListener("hashchange", render);
  render();
})();
"""


def _page(title: str, body: str, depth: int, scripts: Sequence[str] = ()) -> bytes:
    up = "../" * depth
    tags = "".join(f'<script src="{escape(s)}"></script>' for s in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="stylesheet" href="{up}atlas.css"></head><body>{body}{tags}</body></html>').encode()


class _SiteWriter:
    """Writes the pages of ``sources`` into ``root``, copying each image file once."""

    def __init__(self, root: Path, sources: AtlasSources, page_size: int) -> None:
        self.root, self.sources, self.page_size = root, sources, page_size
        self.copied: dict[Path, str] = {}
        self.tiles_on_page = 0  # the first EAGER_TILES images of a page load at once, later ones lazily

    def image(self, src: Path, group: str) -> str:
        """Copy ``src`` into ``img/<group>/`` once; its path relative to the site root."""
        src = Path(src)
        if src not in self.copied:
            if not src.is_file():
                raise DGNError(f"image {src} is missing; the atlas cannot show it")
            rel = f"img/{group}/{len(self.copied):06d}{src.suffix.lower()}"
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.root / rel)
            self.copied[src] = rel
        return self.copied[src]

    def unit_href(self, layer: str, unit: int) -> str:
        return f"units/{_slug(layer)}/{unit}.html"

    def tile(self, src: Path, group: str, caption: str, depth: int, real: bool = False) -> str:
        """A figure: the image (copied once) and its caption (HTML)."""
        self.tiles_on_page += 1
        lazy = ' loading="lazy"' if self.tiles_on_page > EAGER_TILES else ""
        img = f'<img src="{"../" * depth}{self.image(src, group)}" width="128" height="128"{lazy} alt="">'
        return f'<figure class="tile{" real" if real else ""}">{img}<figcaption>{caption}</figcaption></figure>'

    def write(self, progress: Callable[[int], None] | None = None) -> dict:
        (self.root / "atlas.css").write_text(STYLE)
        (self.root / "atlas.js").write_text(LAYER_SCRIPT)
        units = 0
        for layer, members in self.sources.layers.items():
            self.layer_page(layer, members)
            ordered = list(members.values())
            for i, unit in enumerate(ordered):
                self.unit_page(unit, ordered[i - 1] if i else None, ordered[i + 1] if i + 1 < len(ordered) else None)
                units += 1
                if progress is not None:
                    progress(1)
        self.model_page()
        return {"layers": len(self.sources.layers), "units": units, "images": len(self.copied)}

    def model_page(self) -> None:
        s = self.sources
        lines = [f"<h1>{escape(s.title)}</h1><p>classifier: <b>{escape(s.classifier or 'unknown')}</b></p>",
                 ("<h2>Layers</h2><table><tr><th>layer</th><th>units</th><th>with preferred images</th>"
                 "<th>with dataset examples</th></tr>")]
        for layer, members in s.layers.items():
            made = sum(bool(u.rows) for u in members.values())
            real = sum(bool(u.top) for u in members.values())
            lines.append(f'<tr><td><a href="layers/{_slug(layer)}.html">{escape(layer)}</a></td><td>{len(members)}</td>'
                         f"<td>{made}</td><td>{real}</td></tr>")
        lines.append("</table>")
        if s.runs:
            lines.append("<h2>Runs</h2><ul>")
            lines += [f"<li>{escape(r['name'])}: {escape(str(r['method']))}"
                      f"{' through ' + escape(r['generator']) if r['generator'] else ''}, {r['rows']} unit images</li>"
                      for r in s.runs]
            lines.append("</ul>")
        if s.examples:
            e = s.examples
            sample = (e.get("sample") or {}).get("size") or 0
            bottom = f" and bottom {e['bottom']}" if e.get("bottom") else ""
            lines.append(f"<h2>Dataset examples</h2><p>top {e['k']}{bottom} of {e['images']} images per unit; "
                         f"histograms over {sample} evenly spaced images</p>")
        else:
            lines.append('<p class="muted">No dataset examples: run <code>dgn topk</code> and rebuild with '
                         "<code>--topk</code>.</p>")
        for i, p in enumerate(s.pairs):
            if Path(p["picture"]).is_file():
                lines.append(f"<h2>Pairs ({escape(Path(p['folder']).name)})</h2>"
                             f'<img src="{self.image(p["picture"], "pairs")}" style="max-width:100%" alt="pairs">')
        for a in s.audits:
            lines.append(f"<h2>Memorisation audit ({escape(Path(a['folder']).name)})</h2>"
                         f"<p>{a['flagged']} of {a['items']} synthetic images flagged as near copies</p>")
            if Path(a["montage"]).is_file():
                lines.append(f'<img src="{self.image(a["montage"], "audit")}" style="max-width:100%" alt="audit">')
        lines.append(f'<p class="muted">built by dgn {__version__}</p>')
        atomic_write_bytes(self.root / "index.html", _page(s.title, "".join(lines), 0))

    def layer_page(self, layer: str, members: dict[int, AtlasUnit]) -> None:
        entries = []
        for unit in members.values():
            best = unit.best
            src = best["src"] if best else (unit.top[0]["src"] if unit.top else None)
            if src is None:
                continue
            entries.append({"u": unit.unit, "img": "../" + self.image(src, "runs" if best else "examples"),
                            "act": round(best["act_end"], 3) if best else None, "real": best is None,
                            "classes": " ".join(name for name, _ in unit.classes()[:3]),
                            "search": " ".join(name for name, _ in unit.classes()),
                            "href": "../" + self.unit_href(layer, unit.unit)})
        data = {"layer": layer, "pageSize": self.page_size, "eager": EAGER_TILES, "units": entries}
        slug = _slug(layer)
        atomic_write_bytes(self.root / "layers" / f"{slug}.js",
                           f"window.ATLAS_LAYER = {json.dumps(data)};\n".encode())
        body = (f'<nav><a href="../index.html">{escape(self.sources.title)}</a> / {escape(layer)}</nav>'
                f"<h1>{escape(layer)}</h1><p>Each unit's preferred image with the highest final activation "
                "(outlined in blue where no run made one: its top dataset example instead). Search by unit number "
                'or by a class name of its top images.</p><input type="search" id="search" '
                'placeholder="unit number or class name">'
                '<div class="pager"><button id="prev">previous</button><span id="info"></span>'
                '<button id="next">next</button></div><div class="grid" id="grid"></div>')
        atomic_write_bytes(self.root / "layers" / f"{slug}.html",
                           _page(f"{layer}: {self.sources.title}", body, 1, [f"{slug}.js", "../atlas.js"]))

    def unit_page(self, unit: AtlasUnit, previous: AtlasUnit | None, following: AtlasUnit | None) -> None:
        depth, layer = 2, unit.layer
        self.tiles_on_page = 0
        up = "../" * depth
        nav = [f'<a href="{up}index.html">{escape(self.sources.title)}</a>',
               f'<a href="{up}layers/{_slug(layer)}.html">{escape(layer)}</a>', f"unit {unit.unit}"]
        if previous:
            nav.append(f'<a href="{previous.unit}.html">&larr; {previous.unit}</a>')
        if following:
            nav.append(f'<a href="{following.unit}.html">{following.unit} &rarr;</a>')
        classes = ", ".join(f"{escape(name)} {count}" for name, count in unit.classes())
        parts = [f"<nav>{' / '.join(nav)}</nav><h1>{escape(layer)} unit {unit.unit}</h1>"]
        if classes:
            parts.append(f"<p>classes of its top images: {classes}</p>")
        for i, run in enumerate(self.sources.runs):
            rows = sorted((r for r in unit.rows if r["run"] == i), key=lambda r: r.get("restart", 0))
            if not rows:
                continue
            parts.append(f"<h2>Preferred images: {escape(run['name'])} ({escape(str(run['method']))})</h2>")
            parts += [self.tile(r["src"], "runs", self._row_caption(r), depth) for r in rows]
        if not unit.rows:
            parts.append('<p class="muted">No run made a preferred image of this unit.</p>')
        for kind, items in (("Top", unit.top), ("Bottom", unit.bottom)):
            if items:
                parts.append(f"<h2>{kind} {len(items)} dataset examples</h2>")
                parts += [self.tile(it["src"], "examples", f"{it['score']:.3g}"
                                    f"{' ' + escape(it['label']) if it.get('label') else ''}", depth, real=True)
                          for it in items]
        if unit.sample is not None and len(unit.sample):
            marks = [(r["act_end"], (f"{self.sources.runs[r['run']]['name']} restart {r.get('restart', 0)}: "
                      f"{r['act_end']:.3g}")) for r in unit.rows]
            text = f"Activations of {len(unit.sample)} real images (evenly spaced over the dataset)"
            if unit.rows:
                best = unit.best["act_end"]
                text += (f"; red: the {len(unit.rows)} preferred images (best {best:.3g}, above "
                         f"{float((unit.sample < best).mean()):.1%} of the sample)")
            if unit.top:
                text += f"; the best real image of all scores {unit.top[0]['score']:.3g}"
            parts.append(f"<h2>Real activations</h2><p>{text}. Real images score by the unit's highest activation "
                         "over positions.</p>" + histogram_svg(unit.sample, marks))
        if unit.pairs:
            parts.append("<h2>Pairs</h2>")
            for row in unit.pairs:
                other = _TARGET.match(row["partner_of_unit"])
                href = (f"{up}{self.unit_href(self.sources.names.get(other[1], other[1]), int(other[2]))}"
                        if other else None)
                caption = (f'with <a href="{escape(href)}">{escape(row["partner_of_unit"])}</a>' if href
                           else escape(row["partner_of_unit"]))
                caption += f"<br>{row.get('act_a', 0):.3g} | {row.get('act_b', 0):.3g}"
                parts.append(self.tile(row["src"], "pairs", caption, depth))
        verdicts = self._audit_lines(unit)
        if verdicts:
            parts.append("<h2>Memorisation audit</h2><ul>" + "".join(verdicts) + "</ul>")
        path = self.root / self.unit_href(layer, unit.unit)
        atomic_write_bytes(path, _page(f"{layer} {unit.unit}: {self.sources.title}", "".join(parts), depth))

    @staticmethod
    def _row_caption(row: dict) -> str:
        bits = [f"restart {row.get('restart', 0)}", f"{row['act_start']:.3g} &rarr; {row['act_end']:.3g}"
                if "act_start" in row else f"{row['act_end']:.3g}"]
        if row.get("judge"):
            bits.append(f"judge: {escape(str(row['judge']))}")
        return "<br>".join(bits)

    def _audit_lines(self, unit: AtlasUnit) -> list[str]:
        lines = []
        for audit in self.sources.audits:
            for row in unit.rows:
                item = audit["by_path"].get(str(Path(row["src"]).resolve()))
                if item is None:
                    continue
                verdict = {True: "flagged as a near copy", False: "not a copy"}.get(
                    item.get("flagged"), "not judged (no held-out images to set the typical distance)")
                nearest = ", ".join(
                    f"{escape(space)} {hit['distance']:.3g}"
                    + (f" ({hit['ratio']:.2f} of the typical distance)" if hit.get("ratio") is not None else "")
                    for space, hit in item["nearest"].items())
                lines.append(f"<li>restart {row.get('restart', 0)}: {verdict}; nearest training image: {nearest}</li>")
        return lines


def build_atlas(out: str | Path, runs: Sequence[str | Path] = (), topk: str | Path | None = None,
                pairs: Sequence[str | Path] = (), audits: Sequence[str | Path] = (), title: str | None = None,
                page_size: int = 100, progress: Callable[[int], None] | None = None) -> dict:
    """Build the atlas site in ``out`` (replacing an atlas already there) and return a summary.

    Args:
        out: the site folder (``index.html`` opens it).
        runs: run folders whose single-unit rows are shown as preferred images.
        topk: a ``dgn topk`` output folder (examples, crops, activation sample).
        pairs: ``dgn pair`` runs: each pair image is shown on both its units' pages.
        audits: ``dgn audit`` outputs: their verdicts are shown beside the audited images.
        title: the site's title (default "Atlas of <classifier>").
        page_size: units per page of a layer's grid.
        progress: called with 1 after each unit page.

    Returns:
        ``{"layers", "units", "images", "bytes", "seconds", "index"}``.
    """
    if page_size < 1:
        raise DGNError(f"page size must be >= 1, got {page_size}")
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DGNError(f"{out} is not empty and not an atlas; choose another --out")
    sources = read_sources(runs, topk, pairs, audits, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        summary = _SiteWriter(staging, sources, page_size).write(progress)
        summary["bytes"] = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        summary["seconds"] = round(time.perf_counter() - start, 2)
        record = {"dgn_version": __version__, "title": sources.title, "classifier": sources.classifier,
                  "runs": [r["folder"] for r in sources.runs], "topk": str(topk) if topk else None,
                  "pairs": [str(p) for p in pairs], "audits": [str(a) for a in audits], **summary}
        atomic_write_bytes(staging / MARKER, json.dumps(record, indent=1).encode())
        if out.exists():
            old = out.with_name(f".{out.name}-old-{time.time_ns()}")
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**summary, "index": str(out / "index.html")}
