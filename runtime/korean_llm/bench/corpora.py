"""Korean documentation prose from Debian packages, for benchmarks that need more Korean text than konlpy ships.

    python -m korean_llm.bench.corpora [--cache DIR]   # fetch, extract, print document and character counts

Three packages of Debian 12 (bookworm) hold Korean manuals as HTML: `libreoffice-help-ko` (LibreOffice 7.4
help, 2,561 pages), `gimp-help-ko` (the GIMP 2.10 manual) and `debian-faq-ko` (the Debian FAQ, 17 pages).
They are fetched with `apt-get download` (no install, no root: the registry `ci/install-promtool.sh` uses too;
a package apt-get cannot fetch is exit 2), unpacked with `dpkg-deb -x`, and each HTML page becomes one
plain-text document: scripts, styles and the page head dropped, a line break at every block element and where
the source has one, runs of blanks collapsed, empty lines dropped. Pages with fewer than 5 % of their
characters Hangul syllables (untranslated pages around a translated menu) are left out. The result is cached
as `<cache>/<set>.jsonl`, one `{"text"}` row per page.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from korean_llm.builtin import cache_root
from korean_llm.errors import DataError, KoreanLLMError

CORPUS_VERSION = "v1"
MIN_HANGUL_SHARE = 0.05
# set name -> (Debian package, folder of its HTML pages inside the package)
DEBIAN_SETS: dict[str, tuple[str, str]] = {
    "libreoffice-help": ("libreoffice-help-ko", "usr/share/libreoffice/help/ko"),
    "gimp-help": ("gimp-help-ko", "usr/share/gimp/2.0/help/ko"),
    "debian-faq": ("debian-faq-ko", "usr/share/doc/debian/FAQ/ko"),
}
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd"}
_SKIP_TAGS = {"script", "style", "head", "title"}
_HANGUL = re.compile("[\uac00-\ud7a3]")


class _Text(HTMLParser):
    """The text of an HTML page, a line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:  # the source's own line breaks are kept; blocks add more
            self.parts.append(data)


def html_text(page: str) -> str:
    """Plain text of one HTML page: a line per block of text, blanks collapsed, empty lines dropped."""
    parser = _Text()
    parser.feed(page)
    parser.close()
    lines = (re.sub(r"\s+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _fetch(package: str, work: Path) -> Path:
    """`package` downloaded and unpacked under `work`; the folder it was unpacked to."""
    try:
        subprocess.run(["apt-get", "download", "-q", package], cwd=work, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise DataError(f"{package}: apt-get not found (a Debian or Ubuntu machine is needed)") from None
    except subprocess.CalledProcessError as exc:
        raise DataError(
            f"apt-get download {package} failed ({exc.stderr.strip().splitlines()[-1] if exc.stderr else exc}); "
            "`apt-get update` first if the package lists are empty"
        ) from None
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def debian_korean_docs(cache: Path | None = None) -> dict[str, list[str]]:
    """The documents of every set in DEBIAN_SETS (fetched once, then read from `cache`), in file order."""
    cache = cache or cache_root() / "corpora" / f"debian-ko-docs-{CORPUS_VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[str]] = {}
    for name, (package, folder) in DEBIAN_SETS.items():
        target = cache / f"{name}.jsonl"
        if not target.is_file():
            with tempfile.TemporaryDirectory(prefix="korean-docs-") as tmp:
                root = _fetch(package, Path(tmp))
                pages = sorted((root / folder).rglob("*.html"))
                if not pages:
                    raise DataError(f"{package}: no HTML pages under /{folder}")
                texts = [html_text(p.read_text(encoding="utf-8", errors="replace")) for p in pages]
                part = target.with_suffix(".jsonl.part")
                with part.open("w", encoding="utf-8") as out:
                    for text in texts:
                        if len(_HANGUL.findall(text)) >= MIN_HANGUL_SHARE * len(text):
                            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                part.replace(target)
        with target.open(encoding="utf-8") as rows:
            sets[name] = [json.loads(line)["text"] for line in rows]
    return sets


def main(argv: list[str] | None = None) -> int:
    """python -m korean_llm.bench.corpora [--cache DIR] [--clear]"""
    p = argparse.ArgumentParser(prog="python -m korean_llm.bench.corpora", description=__doc__.split("\n")[0])
    p.add_argument("--cache", default=None, help="folder of the extracted documents (default: the korean-llm cache)")
    p.add_argument("--clear", action="store_true", help="fetch and extract again")
    args = p.parse_args(argv)
    cache = Path(args.cache) if args.cache else None
    if args.clear and cache and cache.is_dir():
        shutil.rmtree(cache)
    try:
        sets = debian_korean_docs(cache)
    except KoreanLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for name, texts in sets.items():
        hangul = sum(len(_HANGUL.findall(t)) for t in texts)
        print(f"{name}: {len(texts):,} documents, {sum(map(len, texts)):,} characters, {hangul:,} Hangul syllables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
